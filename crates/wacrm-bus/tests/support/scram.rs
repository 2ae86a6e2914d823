//! SCRAM credentials on the test broker, stored the way a Kafka administrator stores them: an
//! `AlterUserScramCredentials` request (API key 51, version 0) with the salted password. rdkafka
//! has no call for it, so the request is written here by hand, on tansu's own plaintext port,
//! before [`Broker::require_sasl`] (afterwards tansu answers nothing before authentication).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha512;

use super::broker::Broker;

/// Kafka's code for SCRAM-SHA-512 in `AlterUserScramCredentials`.
const SCRAM_SHA_512: u8 = 2;
/// The iteration count Kafka's own tools default to.
const ITERATIONS: u32 = 4096;

impl Broker {
    /// Stores a SCRAM-SHA-512 credential: `user` then signs in with `password`.
    pub fn add_scram_sha512_user(&self, user: &str, password: &str) {
        // A fixed salt will do: the credential lives as long as the test's broker.
        let salt: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5a);
        let salted = salted_password(password.as_bytes(), &salt, ITERATIONS);

        let mut body = Vec::new();
        uvarint(&mut body, 1); // deletions: none (compact array: length + 1)
        uvarint(&mut body, 2); // upsertions: one
        compact_bytes(&mut body, user.as_bytes());
        body.push(SCRAM_SHA_512);
        body.extend_from_slice(&(ITERATIONS as i32).to_be_bytes());
        compact_bytes(&mut body, &salt);
        compact_bytes(&mut body, &salted);
        body.push(0); // the upsertion's tagged fields
        body.push(0); // the request's tagged fields

        let client = b"wacrm-test-admin";
        let mut request = Vec::new();
        request.extend_from_slice(&51i16.to_be_bytes()); // AlterUserScramCredentials
        request.extend_from_slice(&0i16.to_be_bytes()); // version 0 (flexible: header v2)
        request.extend_from_slice(&11i32.to_be_bytes()); // correlation id
        request.extend_from_slice(&(client.len() as i16).to_be_bytes());
        request.extend_from_slice(client);
        request.push(0); // the header's tagged fields
        request.extend_from_slice(&body);

        let mut stream = TcpStream::connect(("127.0.0.1", self.plaintext_port())).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(&(request.len() as i32).to_be_bytes())
            .unwrap();
        stream.write_all(&request).unwrap();
        let mut size = [0u8; 4];
        stream.read_exact(&mut size).unwrap();
        let mut reply = vec![0u8; i32::from_be_bytes(size) as usize];
        stream.read_exact(&mut reply).unwrap();

        // Header v1: correlation id, tagged fields. Body: throttle time, then the results
        // (compact array) of user (compact string) and error code.
        assert_eq!(
            reply[..4],
            11i32.to_be_bytes(),
            "a reply to another request"
        );
        let mut at = 4 + 1 + 4;
        let results = read_uvarint(&reply, &mut at);
        assert_eq!(results, 2, "one result: {reply:?}");
        let name_len = read_uvarint(&reply, &mut at) - 1;
        at += name_len as usize;
        let error = i16::from_be_bytes([reply[at], reply[at + 1]]);
        assert_eq!(error, 0, "the broker refused the credential: {reply:?}");
    }
}

/// SCRAM's `Hi(password, salt, i)`: PBKDF2 with HMAC-SHA-512, one block (the output is the
/// hash's length).
pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mac = || Hmac::<Sha512>::new_from_slice(password).unwrap();
    let mut first = mac();
    first.update(salt);
    first.update(&1u32.to_be_bytes());
    let mut u = first.finalize().into_bytes().to_vec();
    let mut out = u.clone();
    for _ in 1..iterations {
        let mut next = mac();
        next.update(&u);
        u = next.finalize().into_bytes().to_vec();
        for (o, b) in out.iter_mut().zip(&u) {
            *o ^= b;
        }
    }
    out
}

fn uvarint(out: &mut Vec<u8>, mut n: u32) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn read_uvarint(bytes: &[u8], at: &mut usize) -> u32 {
    let mut n = 0u32;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        n |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return n;
        }
        shift += 7;
    }
}

/// Compact bytes (or string): length + 1 as an unsigned varint, then the bytes.
fn compact_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    uvarint(out, bytes.len() as u32 + 1);
    out.extend_from_slice(bytes);
}
