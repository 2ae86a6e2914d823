//! Searching contacts by name (`queries::find_contacts_by_name`) on every database: any case,
//! profile name or username, `%` and `_` taken literally, merged contacts left out, and a
//! query too short to mean anything finds nothing.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use common::databases;
use sea_orm::{ActiveValue::Set, EntityTrait};
use wacrm_store::entities::contact;
use wacrm_store::queries::find_contacts_by_name;

async fn contact(
    db: &wacrm_store::Db,
    id: &str,
    name: Option<&str>,
    username: Option<&str>,
    merged: bool,
) {
    contact::Entity::insert(contact::ActiveModel {
        id: Set(id.to_owned()),
        display_name: Set(name.map(str::to_owned)),
        username: Set(username.map(str::to_owned)),
        merged_into: Set(merged.then(|| "c1".to_owned())),
        created_at: Set(Utc::now()),
        updated_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await
    .unwrap();
}

#[tokio::test]
async fn names_match_in_any_case_with_wildcards_taken_literally() {
    for t in databases().await {
        let db = &t.db;
        contact(db, "c1", Some("Maria Silva"), None, false).await;
        contact(db, "c2", Some("MARIANA"), None, false).await;
        contact(db, "c3", Some("100%_off"), None, false).await;
        contact(db, "c4", None, Some("mari.loja"), false).await;
        contact(db, "c5", Some("Maria Antiga"), None, true).await;
        let ids = |found: Vec<wacrm_store::queries::ContactView>| {
            let mut ids: Vec<String> = found.into_iter().map(|c| c.id).collect();
            ids.sort();
            ids
        };
        assert_eq!(
            ids(find_contacts_by_name(db, "mari", None).await.unwrap()),
            vec!["c1", "c2", "c4"],
            "{}",
            t.name
        );
        assert_eq!(
            ids(find_contacts_by_name(db, "%_", None).await.unwrap()),
            vec!["c3"],
            "{}",
            t.name
        );
        assert!(
            find_contacts_by_name(db, "a_i", None)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            t.name
        );
        assert!(find_contacts_by_name(db, "m", None)
            .await
            .unwrap()
            .is_empty());
        assert!(find_contacts_by_name(db, "ninguém", None)
            .await
            .unwrap()
            .is_empty());
    }
}
