//! Value-set enums as database values: [`choice!`](crate::choice) declares a
//! [`custos_core::filter::Choice`] enum (core knows no database) and makes it a diesel `Text`
//! value, so rows hold `VulnerabilityStatus`, not a string parsed back later.
//!
//! Columns stay `text`. Written, a value is its seed string; read, a string outside the set is an
//! error (a deserialization failure: a 500 whose cause, naming the value and the type, is
//! logged), never a fallback: the database holds what this server wrote, so anything else is
//! damage or a newer release's value, and showing a default instead would misreport the record.

use custos_core::filter::Choice;

/// Declares a value-set enum (as [`custos_core::choice!`]) that diesel reads and writes as `Text`.
#[macro_export]
macro_rules! choice {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $crate::__core::choice! {
            $(#[$m])*
            #[derive($crate::diesel::expression::AsExpression, $crate::diesel::deserialize::FromSqlRow)]
            #[diesel(sql_type = $crate::diesel::sql_types::Text)]
            $vis enum $name { $($variant = $text),+ }
        }

        impl $crate::diesel::serialize::ToSql<$crate::diesel::sql_types::Text, $crate::diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut $crate::diesel::serialize::Output<'b, '_, $crate::diesel::pg::Pg>,
            ) -> $crate::diesel::serialize::Result {
                $crate::choice::write(*self, out)
            }
        }

        impl $crate::diesel::deserialize::FromSql<$crate::diesel::sql_types::Text, $crate::diesel::pg::Pg> for $name {
            fn from_sql(value: $crate::diesel::pg::PgValue<'_>) -> $crate::diesel::deserialize::Result<Self> {
                $crate::choice::read(stringify!($name), value.as_bytes())
            }
        }
    };
}

#[doc(hidden)]
pub fn write<C: Choice>(
    value: C,
    out: &mut diesel::serialize::Output<'_, '_, diesel::pg::Pg>,
) -> diesel::serialize::Result {
    use std::io::Write;
    out.write_all(value.as_str().as_bytes())?;
    Ok(diesel::serialize::IsNull::No)
}

#[doc(hidden)]
pub fn read<C: Choice>(type_name: &str, raw: &[u8]) -> diesel::deserialize::Result<C> {
    let text = std::str::from_utf8(raw)?;
    C::ALL.iter().copied().find(|c| c.as_str() == text).ok_or_else(|| {
        format!(
            "the database holds {text:?}, which is not a {type_name} (one of {}); the row must be repaired",
            C::allowed()
        )
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::choice! { enum Colour { Red = "RED", Green = "GREEN" } }

    #[test]
    fn stored_values_outside_the_set_are_errors() {
        assert_eq!(read::<Colour>("Colour", b"GREEN").unwrap(), Colour::Green);
        let err = read::<Colour>("Colour", b"BLUE").unwrap_err().to_string();
        assert!(err.contains("\"BLUE\", which is not a Colour (one of RED, GREEN)"), "{err}");
    }
}
