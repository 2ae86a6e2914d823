//! Console accounts and sessions (`wacrm_store::accounts`, `wacrm_store::console_sessions`) on
//! every database: passwords, TOTP enrolment and replay, recovery codes, lockout, disabling,
//! and sessions' timeouts, rotation after the second factor, and logout.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{Duration, SubsecRound, Utc};
use common::databases;
use wacrm_store::accounts::{self, NewAccount, Verdict};
use wacrm_store::console_sessions as sessions;
use wacrm_store::keys::Role;

const PASSWORD: &str = "cavalo correto bateria grampo";

fn agent(username: &str) -> NewAccount {
    NewAccount {
        username: username.into(),
        name: "Bruno Agente".into(),
        role: Role::Agent,
        scopes: None,
        business_numbers: Some(vec!["106540352242922".into()]),
        locale: None,
        password: PASSWORD.into(),
        created_by: "cli".into(),
    }
}

#[tokio::test]
async fn a_sign_in_takes_the_password_then_a_code_used_once() {
    for t in databases().await {
        let db = &t.db;
        let created = accounts::create(db, agent("Bruno")).await.unwrap();
        assert_eq!(created.username, "bruno");
        assert_eq!(created.locale, "pt-BR");
        assert!(!created.mfa_enrolled);
        let principal = created.principal();
        assert_eq!(principal.key_id, "account:bruno");
        assert_eq!(
            principal.business_numbers,
            Some(vec!["106540352242922".into()])
        );
        assert!(
            accounts::create(db, agent("BRUNO")).await.is_err(),
            "{}",
            t.name
        );
        assert!(accounts::create(
            db,
            NewAccount {
                password: "curta".into(),
                ..agent("c")
            }
        )
        .await
        .is_err());

        let now = Utc::now().trunc_subsecs(6);
        assert_eq!(
            accounts::check_password(db, "bruno", "errada errada", now)
                .await
                .unwrap(),
            Verdict::Refused
        );
        assert_eq!(
            accounts::check_password(db, "ninguem", PASSWORD, now)
                .await
                .unwrap(),
            Verdict::Refused
        );
        let Verdict::Accepted(account) = accounts::check_password(db, "Bruno", PASSWORD, now)
            .await
            .unwrap()
        else {
            panic!("{}: the right password", t.name)
        };

        // Enrolment: a wrong code is refused; the right one returns ten recovery codes.
        let secret = accounts::new_totp_secret();
        assert!(accounts::otpauth_url(&secret, "bruno")
            .unwrap()
            .starts_with("otpauth://totp/"));
        assert!(
            accounts::enrol_totp(db, &account.id, &secret, "000000", now)
                .await
                .unwrap()
                .is_err()
        );
        let code = accounts::totp_code(&secret, now).unwrap();
        let recovery = accounts::enrol_totp(db, &account.id, &secret, &code, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(recovery.len(), accounts::RECOVERY_CODES);
        // The enrolment's code is used: not again, at sign-in.
        assert_eq!(
            accounts::check_second_factor(db, &account.id, &code, now)
                .await
                .unwrap(),
            Verdict::Refused,
            "{}: a replayed code",
            t.name
        );
        let later = now + Duration::seconds(30);
        let next = accounts::totp_code(&secret, later).unwrap();
        assert!(matches!(
            accounts::check_second_factor(db, &account.id, &next, later)
                .await
                .unwrap(),
            Verdict::Accepted(_)
        ));
        // A recovery code works once.
        assert!(matches!(
            accounts::check_second_factor(db, &account.id, &recovery[0].to_uppercase(), later)
                .await
                .unwrap(),
            Verdict::Accepted(_)
        ));
        assert_eq!(
            accounts::check_second_factor(db, &account.id, &recovery[0], later)
                .await
                .unwrap(),
            Verdict::Refused
        );
        let shown = accounts::get(db, &account.id).await.unwrap().unwrap();
        assert!(shown.mfa_enrolled);
        assert_eq!(shown.recovery_codes_left, accounts::RECOVERY_CODES - 1);
        assert!(shown.last_login_at.is_some());
    }
}

#[tokio::test]
async fn five_failures_lock_even_the_right_password_and_reset_mfa_unlocks() {
    for t in databases().await {
        let db = &t.db;
        let account = accounts::create(db, agent("dora")).await.unwrap();
        let secret = accounts::new_totp_secret();
        let now = Utc::now().trunc_subsecs(6);
        let code = accounts::totp_code(&secret, now).unwrap();
        accounts::enrol_totp(db, &account.id, &secret, &code, now)
            .await
            .unwrap()
            .unwrap();
        // Four wrong codes (and one wrong password) in a row: the fifth failure locks.
        for _ in 0..4 {
            assert_eq!(
                accounts::check_second_factor(db, &account.id, "123456", now)
                    .await
                    .unwrap(),
                Verdict::Refused
            );
        }
        let Verdict::Locked(until) =
            accounts::check_password(db, "dora", "senha errada demais", now)
                .await
                .unwrap()
        else {
            panic!("{}: the fifth failure locks", t.name)
        };
        assert_eq!(until, now + accounts::FIRST_LOCK);
        assert_eq!(
            accounts::check_password(db, "dora", PASSWORD, now)
                .await
                .unwrap(),
            Verdict::Locked(until),
            "{}: locked means locked",
            t.name
        );
        // After the lock, the right password passes the first step again.
        let after = until + Duration::seconds(1);
        assert!(matches!(
            accounts::check_password(db, "dora", PASSWORD, after)
                .await
                .unwrap(),
            Verdict::Accepted(_)
        ));
        // One more failure locks again, for twice as long.
        let Verdict::Locked(again) =
            accounts::check_second_factor(db, &account.id, "654321", after)
                .await
                .unwrap()
        else {
            panic!("{}: the sixth failure locks", t.name)
        };
        assert_eq!(again, after + accounts::FIRST_LOCK * 2);
        assert!(accounts::reset_mfa(db, &account.id).await.unwrap());
        let reset = accounts::get(db, &account.id).await.unwrap().unwrap();
        assert!(!reset.mfa_enrolled && reset.locked_until.is_none());
        assert!(accounts::disable(db, &account.id).await.unwrap());
        assert_eq!(
            accounts::check_password(db, "dora", PASSWORD, after)
                .await
                .unwrap(),
            Verdict::Disabled
        );
    }
}

#[tokio::test]
async fn sessions_time_out_rotate_after_the_second_factor_and_end_at_logout() {
    let idle = Duration::minutes(30);
    let absolute = Duration::hours(12);
    for t in databases().await {
        let db = &t.db;
        let account = accounts::create(db, agent("ana")).await.unwrap();
        let now = Utc::now().trunc_subsecs(6);
        let token = sessions::start(db, &account.id, now, absolute)
            .await
            .unwrap();
        let session = sessions::find(db, &token, now, idle)
            .await
            .unwrap()
            .unwrap();
        assert!(!session.mfa_passed);
        assert_eq!(session.account_id, account.id);
        assert!(sessions::find(db, "not-a-token", now, idle)
            .await
            .unwrap()
            .is_none());
        assert!(sessions::find(db, &"0".repeat(64), now, idle)
            .await
            .unwrap()
            .is_none());

        // The second factor replaces the session: the old token is worth nothing.
        let passed = sessions::pass_mfa(db, &session, now).await.unwrap();
        assert!(
            sessions::find(db, &token, now, idle)
                .await
                .unwrap()
                .is_none(),
            "{}",
            t.name
        );
        let active = sessions::find(db, &passed, now, idle)
            .await
            .unwrap()
            .unwrap();
        assert!(active.mfa_passed);
        assert_ne!(active.csrf, session.csrf);

        // Idle: seen 29 minutes apart it lives; 31 minutes after the last sight it is gone.
        let t1 = now + Duration::minutes(29);
        assert!(sessions::find(db, &passed, t1, idle)
            .await
            .unwrap()
            .is_some());
        assert!(
            sessions::find(db, &passed, t1 + Duration::minutes(31), idle)
                .await
                .unwrap()
                .is_none()
        );

        // Absolute: however active, it ends.
        let token = sessions::start(db, &account.id, now, absolute)
            .await
            .unwrap();
        let mut at = now;
        while at < now + absolute - Duration::minutes(20) {
            at += Duration::minutes(20);
            assert!(sessions::find(db, &token, at, idle)
                .await
                .unwrap()
                .is_some());
        }
        assert!(sessions::find(db, &token, now + absolute, idle)
            .await
            .unwrap()
            .is_none());

        // Logout, and every session of an account.
        let one = sessions::start(db, &account.id, now, absolute)
            .await
            .unwrap();
        let two = sessions::start(db, &account.id, now, absolute)
            .await
            .unwrap();
        let s = sessions::find(db, &one, now, idle).await.unwrap().unwrap();
        sessions::end(db, &s).await.unwrap();
        assert!(sessions::find(db, &one, now, idle).await.unwrap().is_none());
        assert_eq!(sessions::end_all_for(db, &account.id).await.unwrap(), 1);
        assert!(sessions::find(db, &two, now, idle).await.unwrap().is_none());
    }
}

/// Sessions nobody comes back to (a closed tab, a lost laptop) are not found again, so finding
/// cannot be what removes them: each sign-in removes the sessions past their absolute end, and
/// the table holds at most the sessions of the last `absolute` hours.
#[tokio::test]
async fn sessions_left_behind_are_removed_at_a_later_sign_in() {
    use sea_orm::{EntityTrait, PaginatorTrait};
    use wacrm_store::entities::console_session;
    let absolute = Duration::hours(12);
    for t in databases().await {
        let db = &t.db;
        let account = accounts::create(db, agent("leo")).await.unwrap();
        let now = Utc::now().trunc_subsecs(6);
        for _ in 0..3 {
            sessions::start(db, &account.id, now, absolute)
                .await
                .unwrap();
        }
        let alive = sessions::start(db, &account.id, now + Duration::hours(6), absolute)
            .await
            .unwrap();
        assert_eq!(
            console_session::Entity::find().count(db).await.unwrap(),
            4,
            "{}",
            t.name
        );
        sessions::start(
            db,
            &account.id,
            now + absolute + Duration::minutes(1),
            absolute,
        )
        .await
        .unwrap();
        assert_eq!(
            console_session::Entity::find().count(db).await.unwrap(),
            2,
            "{}: the three past their end are gone",
            t.name
        );
        let later = now + absolute + Duration::minutes(2);
        assert!(sessions::find(db, &alive, later, Duration::hours(24))
            .await
            .unwrap()
            .is_some());
    }
}

/// One code sent by several sign-ins at once (a replay racing the real one) signs in once.
#[tokio::test]
async fn one_code_sent_at_once_by_several_sign_ins_is_accepted_once() {
    for t in databases().await {
        let db = &t.db;
        let account = accounts::create(db, agent("rui")).await.unwrap();
        let secret = accounts::new_totp_secret();
        let now = Utc::now().trunc_subsecs(6);
        accounts::enrol_totp(
            db,
            &account.id,
            &secret,
            &accounts::totp_code(&secret, now).unwrap(),
            now,
        )
        .await
        .unwrap()
        .unwrap();
        let later = now + Duration::seconds(30);
        let code = accounts::totp_code(&secret, later).unwrap();
        let verdicts = futures::future::join_all(
            (0..8).map(|_| accounts::check_second_factor(db, &account.id, &code, later)),
        )
        .await;
        let accepted = verdicts
            .into_iter()
            .filter(|v| matches!(v, Ok(Verdict::Accepted(_))))
            .count();
        assert_eq!(accepted, 1, "{}", t.name);
    }
}
