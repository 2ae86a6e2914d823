//! Consent: a contact's opt-in or opt-out for a purpose, and the rule that decides whether a
//! marketing template may go.
//!
//! Consent is a history of decisions, never a flag that is overwritten: each decision says
//! what it is about (the purpose), whether the contact agreed, when, through which channel, where
//! (a form's URL, a campaign), who recorded it, and optionally which business number it is
//! limited to. The *current* state of a purpose is the newest decision that applies; at equal
//! times an opt-out wins, so the order decisions were recorded in does not matter.
//!
//! Purposes are a small closed set plus explicitly custom ones (`custom:<slug>`). A free-text
//! purpose would let a typo (`Marketing`, `mkt`) record an opt-out nobody ever checks; a bare
//! word outside the set is refused, naming the valid ones, while a business with purposes of its
//! own still records them under `custom:`. Channels are a closed set too (`other` plus the
//! free-text source covers the rest): reports group by them.
//!
//! Everything here is pure; the store keeps the decisions and the send API applies
//! [`check_marketing`].

use chrono::{DateTime, Utc};

use crate::outbound::{OutboundContent, Refusal, TemplateCategory};

/// What a consent decision is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// Promotional messages (WhatsApp's marketing templates): the purpose wacrm enforces.
    Marketing,
    /// Messages about the contact's orders, account or support requests. Recorded for the
    /// record; wacrm does not gate them on consent (they rest on the contract, and WhatsApp's
    /// 24-hour window and template categories already bound them).
    Service,
    /// Satisfaction surveys and research.
    Surveys,
    /// Sharing the contact's data with partners.
    DataSharing,
    /// A purpose of the business's own: `custom:<slug>` (lower-case letters, digits, `_`, `-`;
    /// 1 to 64 characters).
    Custom(String),
}

/// The purposes of the closed set, as written.
pub const PURPOSES: [&str; 4] = ["marketing", "service", "surveys", "data_sharing"];

/// The prefix of a business's own purposes.
pub const CUSTOM_PREFIX: &str = "custom:";

impl Purpose {
    /// Reads a purpose as written (`marketing`, `custom:loyalty_club`); `Err` says why not.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "marketing" => Ok(Purpose::Marketing),
            "service" => Ok(Purpose::Service),
            "surveys" => Ok(Purpose::Surveys),
            "data_sharing" => Ok(Purpose::DataSharing),
            other => match other.strip_prefix(CUSTOM_PREFIX) {
                Some(slug) if is_slug(slug) => Ok(Purpose::Custom(slug.to_owned())),
                Some(_) => Err(format!(
                    "a custom purpose is {CUSTOM_PREFIX}<slug>: 1 to 64 lower-case letters, \
                     digits, '_' or '-' (got {other:?})"
                )),
                None => Err(format!(
                    "unknown purpose {other:?}: one of {}, or {CUSTOM_PREFIX}<slug> for a purpose \
                     of the business's own",
                    PURPOSES.join(", ")
                )),
            },
        }
    }

    /// The purpose as written.
    pub fn as_string(&self) -> String {
        match self {
            Purpose::Marketing => "marketing".into(),
            Purpose::Service => "service".into(),
            Purpose::Surveys => "surveys".into(),
            Purpose::DataSharing => "data_sharing".into(),
            Purpose::Custom(slug) => format!("{CUSTOM_PREFIX}{slug}"),
        }
    }
}

fn is_slug(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Through what a decision reached the business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A WhatsApp message or WhatsApp's own preference switch.
    Whatsapp,
    /// A form on a website or app.
    WebForm,
    /// In person (a shop, an event).
    InPerson,
    /// A phone call.
    Phone,
    /// An e-mail.
    Email,
    /// A text message.
    Sms,
    /// A signed paper form.
    Paper,
    /// Anything else (the source says what).
    Other,
}

/// Every channel, as written.
pub const CHANNELS: [&str; 8] = [
    "whatsapp",
    "web_form",
    "in_person",
    "phone",
    "email",
    "sms",
    "paper",
    "other",
];

impl Channel {
    /// Reads a channel as written; `Err` says why not.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "whatsapp" => Channel::Whatsapp,
            "web_form" => Channel::WebForm,
            "in_person" => Channel::InPerson,
            "phone" => Channel::Phone,
            "email" => Channel::Email,
            "sms" => Channel::Sms,
            "paper" => Channel::Paper,
            "other" => Channel::Other,
            other => {
                return Err(format!(
                    "unknown channel {other:?}: one of {}",
                    CHANNELS.join(", ")
                ))
            }
        })
    }

    /// The channel as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Whatsapp => "whatsapp",
            Channel::WebForm => "web_form",
            Channel::InPerson => "in_person",
            Channel::Phone => "phone",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Paper => "paper",
            Channel::Other => "other",
        }
    }
}

/// Who recorded a decision that the contact made themselves in WhatsApp (a keyword, the
/// preference switch).
pub const BY_CONTACT: &str = "contact";
/// Who recorded a decision WhatsApp reported on the contact's behalf (error 131050).
pub const BY_WHATSAPP: &str = "whatsapp";

/// What the rule needs to know of a stored decision.
pub trait Decision {
    /// Its id (the last tie-break, so the answer never depends on the order given).
    fn id(&self) -> &str;
    /// The purpose, as written.
    fn purpose(&self) -> &str;
    /// Whether the contact agreed (an opt-in) or not (an opt-out).
    fn granted(&self) -> bool;
    /// When the contact decided.
    fn at(&self) -> DateTime<Utc>;
    /// The business number it is limited to; `None`: every number of the business.
    fn phone_number_id(&self) -> Option<&str>;
}

/// Orders decisions: later first; at equal times an opt-out first, then by id.
fn newer<D: Decision>(a: &D, b: &D) -> bool {
    (a.at(), !a.granted(), a.id()) > (b.at(), !b.granted(), b.id())
}

/// The decision in force for `purpose` on business number `phone_number_id`: the newest of
/// those for every number and those limited to this one.
pub fn effective<'a, D: Decision>(
    decisions: &'a [D],
    purpose: &str,
    phone_number_id: &str,
) -> Option<&'a D> {
    decisions
        .iter()
        .filter(|d| d.purpose() == purpose)
        .filter(|d| d.phone_number_id().is_none_or(|n| n == phone_number_id))
        .fold(None, |best: Option<&D>, d| match best {
            Some(b) if !newer(d, b) => Some(b),
            _ => Some(d),
        })
}

/// The current decision of every (purpose, business number) that has one, in the order of
/// their purposes then numbers (the business-wide one first).
pub fn current<D: Decision>(decisions: &[D]) -> Vec<&D> {
    let mut latest: std::collections::BTreeMap<(&str, Option<&str>), &D> = Default::default();
    for d in decisions {
        let slot = latest
            .entry((d.purpose(), d.phone_number_id()))
            .or_insert(d);
        if newer(d, *slot) {
            *slot = d;
        }
    }
    latest.into_values().collect()
}

/// The marketing consent in force for a recipient on a number, as the rule reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentState {
    /// Opted in (`true`) or out.
    pub granted: bool,
    /// When the contact decided.
    pub at: DateTime<Utc>,
    /// Through which channel.
    pub channel: String,
}

/// The policy of marketing templates (`[whatsapp] marketing_requires_opt_in`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarketingPolicy {
    /// A marketing template needs a current opt-in for `marketing`, not merely the absence of
    /// an opt-out.
    pub requires_opt_in: bool,
}

/// The name of a template that counts as marketing (`None`: the content is no template, or a
/// utility or authentication one). Unknown templates count as marketing, as for opt-outs.
pub fn marketing_template(
    content: &OutboundContent,
    category: Option<TemplateCategory>,
) -> Option<&str> {
    match content {
        OutboundContent::Template { name, .. }
            if category.unwrap_or(TemplateCategory::Marketing) == TemplateCategory::Marketing =>
        {
            Some(name)
        }
        _ => None,
    }
}

/// Checks a message against the recipient's marketing consent on its number: a marketing
/// template is refused when the contact's current decision is an opt-out, and — when the
/// policy requires an opt-in — when there is no current opt-in. Anything but a marketing
/// template passes.
pub fn check_marketing(
    content: &OutboundContent,
    category: Option<TemplateCategory>,
    consent: Option<&ConsentState>,
    policy: MarketingPolicy,
) -> Result<(), Refusal> {
    let Some(name) = marketing_template(content, category) else {
        return Ok(());
    };
    match consent {
        Some(c) if !c.granted => Err(Refusal::OptedOut(format!(
            "template {name} is a marketing template and the contact withdrew consent for \
             marketing on {} ({})",
            c.at.to_rfc3339(),
            c.channel
        ))),
        Some(_) => Ok(()),
        None if policy.requires_opt_in => Err(Refusal::NoOptIn(format!(
            "template {name} is a marketing template and this business requires an opt-in for \
             marketing, which the contact never gave (record one with \
             POST /v1/contacts/{{id}}/consent)"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct D {
        id: &'static str,
        purpose: &'static str,
        granted: bool,
        at: &'static str,
        number: Option<&'static str>,
    }

    impl Decision for D {
        fn id(&self) -> &str {
            self.id
        }
        fn purpose(&self) -> &str {
            self.purpose
        }
        fn granted(&self) -> bool {
            self.granted
        }
        fn at(&self) -> DateTime<Utc> {
            DateTime::parse_from_rfc3339(self.at)
                .unwrap()
                .with_timezone(&Utc)
        }
        fn phone_number_id(&self) -> Option<&str> {
            self.number
        }
    }

    fn d(id: &'static str, granted: bool, at: &'static str, number: Option<&'static str>) -> D {
        D {
            id,
            purpose: "marketing",
            granted,
            at,
            number,
        }
    }

    fn template() -> OutboundContent {
        OutboundContent::Template {
            name: "promo".into(),
            language: "pt_BR".into(),
            components: vec![],
        }
    }

    fn state(granted: bool) -> ConsentState {
        ConsentState {
            granted,
            at: DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            channel: "web_form".into(),
        }
    }

    const REQUIRED: MarketingPolicy = MarketingPolicy {
        requires_opt_in: true,
    };

    #[test]
    fn the_newest_decision_wins_whatever_the_order_and_an_opt_out_wins_a_tie() {
        let history = [
            d("a", true, "2026-12-01T10:00:00Z", None),
            d("b", false, "2026-12-02T10:00:00Z", None),
            d("c", true, "2026-11-30T10:00:00Z", None),
        ];
        assert_eq!(effective(&history, "marketing", "1").unwrap().id, "b");
        let mut reversed = history;
        reversed.reverse();
        assert_eq!(effective(&reversed, "marketing", "1").unwrap().id, "b");
        let tie = [
            d("x", true, "2026-12-01T10:00:00Z", None),
            d("y", false, "2026-12-01T10:00:00Z", None),
        ];
        assert_eq!(effective(&tie, "marketing", "1").unwrap().id, "y");
        assert!(effective(&tie, "service", "1").is_none());
    }

    #[test]
    fn a_decision_limited_to_a_number_applies_to_that_number_only() {
        let history = [
            d("form", true, "2026-12-01T10:00:00Z", None),
            d("stop-on-a", false, "2026-12-02T10:00:00Z", Some("A")),
        ];
        assert_eq!(
            effective(&history, "marketing", "A").unwrap().id,
            "stop-on-a"
        );
        assert_eq!(effective(&history, "marketing", "B").unwrap().id, "form");
        let now = current(&history);
        assert_eq!(now.len(), 2);
        assert_eq!(now[0].id, "form", "the business-wide decision first");
    }

    #[test]
    fn only_marketing_templates_need_consent() {
        let text = OutboundContent::Text {
            body: "oi".into(),
            preview_url: false,
        };
        assert!(check_marketing(&text, None, None, REQUIRED).is_ok());
        for category in [TemplateCategory::Utility, TemplateCategory::Authentication] {
            assert!(check_marketing(&template(), Some(category), None, REQUIRED).is_ok());
        }
        // Unknown templates count as marketing.
        assert_eq!(
            check_marketing(&template(), None, None, REQUIRED)
                .unwrap_err()
                .code(),
            "no_opt_in"
        );
    }

    #[test]
    fn without_the_policy_the_absence_of_an_opt_out_suffices() {
        let policy = MarketingPolicy::default();
        let marketing = Some(TemplateCategory::Marketing);
        assert!(check_marketing(&template(), marketing, None, policy).is_ok());
        assert!(check_marketing(&template(), marketing, Some(&state(true)), policy).is_ok());
        let refused = check_marketing(&template(), marketing, Some(&state(false)), policy);
        assert_eq!(refused.unwrap_err().code(), "opted_out");
    }

    #[test]
    fn with_the_policy_only_a_current_opt_in_lets_marketing_through() {
        let marketing = Some(TemplateCategory::Marketing);
        let none = check_marketing(&template(), marketing, None, REQUIRED).unwrap_err();
        assert_eq!(none.code(), "no_opt_in");
        assert!(none.to_string().contains("promo"), "{none}");
        assert!(check_marketing(&template(), marketing, Some(&state(true)), REQUIRED).is_ok());
        let withdrawn =
            check_marketing(&template(), marketing, Some(&state(false)), REQUIRED).unwrap_err();
        assert_eq!(withdrawn.code(), "opted_out");
        assert!(withdrawn.to_string().contains("web_form"), "{withdrawn}");
    }

    #[test]
    fn purposes_are_a_closed_set_plus_custom_ones() {
        assert_eq!(Purpose::parse("marketing"), Ok(Purpose::Marketing));
        assert_eq!(
            Purpose::parse("custom:loyalty_club").map(|p| p.as_string()),
            Ok("custom:loyalty_club".to_owned())
        );
        for bad in ["Marketing", "mkt", "", "custom:", "custom:Has Space"] {
            assert!(Purpose::parse(bad).is_err(), "{bad}");
        }
        for p in PURPOSES {
            assert_eq!(Purpose::parse(p).map(|p| p.as_string()), Ok(p.to_owned()));
        }
        for c in CHANNELS {
            assert_eq!(Channel::parse(c).map(Channel::as_str), Ok(c));
        }
        assert!(Channel::parse("fax").unwrap_err().contains("web_form"));
    }
}
