//! What an access review finds, as a pure function of the organisation's users and tokens (no
//! database, so every rule is unit-tested here).
//!
//! - `user_unused`: an active user not seen for the review's period (their last API-token use or
//!   login; never seen: since they were created).
//! - `token_unused`: an active token of an active user not used for the period (never used:
//!   since it was created).
//! - `admin_unreviewed`: an active admin whose admin access no signed-off review started within
//!   the period less one day confirmed (a finding about them retained). The day less is what
//!   makes quarterly reviews (90 to 92 days apart, at the default period of 90) certify every
//!   admin again each quarter, while an ad-hoc review soon after a quarterly one does not.
//! - `token_of_inactive_user`: a token neither revoked nor expired whose user is deactivated:
//!   it does nothing now, and works again the moment the user is reactivated.
//! - `token_without_expiry`: an active token of an active user that never expires.

use std::collections::HashSet;

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::FindingKind;
use crate::model::RoleName;

/// A user as the rules see them.
#[derive(Debug, Clone)]
pub struct UserFacts {
    pub id: Uuid,
    pub email: String,
    pub role: RoleName,
    pub is_active: bool,
    /// Their latest authentication (API token or login), if any.
    pub last_active_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

/// A token neither revoked nor expired, as the rules see it.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    pub id: Uuid,
    pub user_id: Uuid,
    pub prefix: String,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
}

/// Everything a review judges.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now: OffsetDateTime,
    pub stale_after_days: i32,
    pub users: Vec<UserFacts>,
    pub tokens: Vec<TokenFacts>,
    /// Admins a signed-off review confirmed within the period (see the module's text).
    pub confirmed_admins: HashSet<Uuid>,
}

/// One finding, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: FindingKind,
    pub user_id: Uuid,
    pub user_email: String,
    pub user_role: RoleName,
    pub token: Option<(Uuid, String, String)>,
    pub last_activity_at: Option<OffsetDateTime>,
    pub reason: String,
}

/// The earliest start of a review whose confirmation of an admin still counts for a review
/// starting at `start` (see the module's text).
pub fn confirmation_horizon(start: OffsetDateTime, stale_after_days: i32) -> OffsetDateTime {
    start - Duration::days(i64::from(stale_after_days.max(1)) - 1)
}

/// The findings, users' before tokens', each group in the order of the users' e-mail addresses.
pub fn findings(facts: &Facts) -> Vec<Found> {
    let cutoff = facts.now - Duration::days(i64::from(facts.stale_after_days));
    let days = facts.stale_after_days;
    let mut users: Vec<&UserFacts> = facts.users.iter().collect();
    users.sort_by(|a, b| (&a.email, a.id).cmp(&(&b.email, b.id)));
    let mut out = Vec::new();
    let user_finding = |u: &UserFacts, kind, reason: String| Found {
        kind,
        user_id: u.id,
        user_email: u.email.clone(),
        user_role: u.role,
        token: None,
        last_activity_at: u.last_active_at,
        reason,
    };
    for u in users.iter().filter(|u| u.is_active) {
        if u.last_active_at.unwrap_or(u.created_at) < cutoff {
            let reason = match u.last_active_at {
                Some(at) => format!("not seen for {} days (last seen on {})", (facts.now - at).whole_days(), at.date()),
                None => format!(
                    "never seen since created {} days ago (on {})",
                    (facts.now - u.created_at).whole_days(),
                    u.created_at.date()
                ),
            };
            out.push(user_finding(u, FindingKind::UserUnused, format!("{reason}; the period is {days} days")));
        }
        if u.role == RoleName::Admin && !facts.confirmed_admins.contains(&u.id) {
            out.push(user_finding(
                u,
                FindingKind::AdminUnreviewed,
                format!("admin access not confirmed by a signed-off review in the last {days} days"),
            ));
        }
    }
    for u in &users {
        let mut tokens: Vec<&TokenFacts> = facts.tokens.iter().filter(|t| t.user_id == u.id).collect();
        tokens.sort_by_key(|t| (t.created_at, t.id));
        for t in tokens {
            let found = |kind, reason: String| Found {
                kind,
                user_id: u.id,
                user_email: u.email.clone(),
                user_role: u.role,
                token: Some((t.id, t.prefix.clone(), t.name.clone())),
                last_activity_at: t.last_used_at,
                reason,
            };
            if !u.is_active {
                out.push(found(
                    FindingKind::TokenOfInactiveUser,
                    format!(
                        "token {} of deactivated user {} is neither revoked nor expired: it works again if they are reactivated",
                        t.prefix, u.email
                    ),
                ));
                continue;
            }
            if t.last_used_at.unwrap_or(t.created_at) < cutoff {
                let reason = match t.last_used_at {
                    Some(at) => {
                        format!("not used for {} days (last used on {})", (facts.now - at).whole_days(), at.date())
                    }
                    None => format!(
                        "never used since created {} days ago (on {})",
                        (facts.now - t.created_at).whole_days(),
                        t.created_at.date()
                    ),
                };
                out.push(found(FindingKind::TokenUnused, format!("{reason}; the period is {days} days")));
            }
            if t.expires_at.is_none() {
                out.push(found(FindingKind::TokenWithoutExpiry, format!("token {} never expires", t.prefix)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-07 12:00 UTC);

    fn user(n: u128, role: RoleName, active: bool, last: Option<OffsetDateTime>) -> UserFacts {
        UserFacts {
            id: Uuid::from_u128(n),
            email: format!("u{n}@acme.test"),
            role,
            is_active: active,
            last_active_at: last,
            created_at: datetime!(2026-01-01 0:00 UTC),
        }
    }

    fn token(n: u128, user: u128, last: Option<OffsetDateTime>, expires: Option<OffsetDateTime>) -> TokenFacts {
        TokenFacts {
            id: Uuid::from_u128(1000 + n),
            user_id: Uuid::from_u128(user),
            prefix: format!("cst_{n:06}"),
            name: format!("t{n}"),
            created_at: datetime!(2026-01-01 0:00 UTC),
            last_used_at: last,
            expires_at: expires,
        }
    }

    fn facts(users: Vec<UserFacts>, tokens: Vec<TokenFacts>) -> Facts {
        Facts { now: NOW, stale_after_days: 90, users, tokens, confirmed_admins: HashSet::new() }
    }

    fn kinds(found: &[Found]) -> Vec<(FindingKind, u128, Option<u128>)> {
        found.iter().map(|f| (f.kind, f.user_id.as_u128(), f.token.as_ref().map(|t| t.0.as_u128()))).collect()
    }

    #[test]
    fn users_unused_for_the_period_are_stale_and_never_seen_counts_from_creation() {
        let recent = Some(NOW - Duration::days(89));
        let old = Some(NOW - Duration::days(91));
        let f = findings(&facts(
            vec![
                user(1, RoleName::Editor, true, recent),
                user(2, RoleName::Editor, true, old),
                user(3, RoleName::Viewer, true, None),
                user(4, RoleName::Viewer, false, old),
            ],
            vec![],
        ));
        assert_eq!(kinds(&f), [(FindingKind::UserUnused, 2, None), (FindingKind::UserUnused, 3, None)]);
        assert!(f[0].reason.starts_with("not seen for 91 days (last seen on 2026-09-07)"), "{}", f[0].reason);
        assert!(f[1].reason.starts_with("never seen since created 340 days ago"), "{}", f[1].reason);
        assert_eq!(f[1].last_activity_at, None);
    }

    #[test]
    fn a_shorter_period_finds_more() {
        let mut x = facts(vec![user(1, RoleName::Editor, true, Some(NOW - Duration::days(40)))], vec![]);
        assert!(findings(&x).is_empty());
        x.stale_after_days = 30;
        assert_eq!(kinds(&findings(&x)), [(FindingKind::UserUnused, 1, None)]);
    }

    #[test]
    fn admins_are_listed_unless_a_recent_review_confirmed_them() {
        let seen = Some(NOW - Duration::days(1));
        let mut x = facts(
            vec![
                user(1, RoleName::Admin, true, seen),
                user(2, RoleName::Admin, true, seen),
                user(3, RoleName::Admin, false, seen),
            ],
            vec![],
        );
        x.confirmed_admins.insert(Uuid::from_u128(2));
        assert_eq!(kinds(&findings(&x)), [(FindingKind::AdminUnreviewed, 1, None)]);
    }

    #[test]
    fn a_confirmation_holds_less_than_a_quarter() {
        // Quarterly reviews on the 1st of January and April are 90 days apart: the April
        // review lists every admin again.
        let january = datetime!(2026-01-01 0:00:05 UTC);
        let april = datetime!(2026-04-01 0:00:03 UTC);
        assert!(january < confirmation_horizon(april, 90));
        // An ad-hoc review a month after the quarterly one does not.
        assert!(january > confirmation_horizon(datetime!(2026-02-01 9:00 UTC), 90));
    }

    #[test]
    fn tokens_unused_without_expiry_and_of_deactivated_users() {
        let seen = Some(NOW - Duration::days(1));
        let old = Some(NOW - Duration::days(200));
        let soon = Some(NOW + Duration::days(30));
        let f = findings(&facts(
            vec![user(1, RoleName::Editor, true, seen), user(2, RoleName::Viewer, false, old)],
            vec![
                token(1, 1, seen, soon),
                token(2, 1, old, soon),
                token(3, 1, seen, None),
                token(4, 1, None, soon),
                token(5, 2, old, None),
            ],
        ));
        assert_eq!(
            kinds(&f),
            [
                (FindingKind::TokenUnused, 1, Some(1002)),
                (FindingKind::TokenWithoutExpiry, 1, Some(1003)),
                (FindingKind::TokenUnused, 1, Some(1004)),
                // A deactivated user's token: one finding, not three.
                (FindingKind::TokenOfInactiveUser, 2, Some(1005)),
            ]
        );
        assert!(f[2].reason.starts_with("never used since created"), "{}", f[2].reason);
        assert!(f[3].reason.contains("works again if they are reactivated"), "{}", f[3].reason);
    }

    #[test]
    fn an_organisation_in_order_finds_nothing() {
        let seen = Some(NOW - Duration::days(3));
        let mut x = facts(
            vec![user(1, RoleName::Admin, true, seen), user(2, RoleName::Editor, true, seen)],
            vec![token(1, 1, seen, Some(NOW + Duration::days(10)))],
        );
        x.confirmed_admins.insert(Uuid::from_u128(1));
        assert!(findings(&x).is_empty());
    }
}
