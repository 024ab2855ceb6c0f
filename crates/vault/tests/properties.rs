//! Property tests of the vault's promises: round trips for any input, and refusal of every
//! altered byte and every other context.

use custos_vault::{
    DataKey, FieldContext, KeyProvider, LocalKeyProvider, MasterKey, MasterKeys, VaultError, WrapContext, WrappedKey,
    decrypt_field, encrypt_field, mask, rewrap, sealed_data_key_id,
};
use proptest::prelude::*;
use proptest::sample::Index;
use uuid::Uuid;

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<[u8; 16]>().prop_map(Uuid::from_bytes)
}

fn data_key() -> impl Strategy<Value = DataKey> {
    any::<[u8; 32]>().prop_map(|b| DataKey::from_bytes(&b))
}

fn master_key() -> impl Strategy<Value = MasterKey> {
    master_bytes().prop_map(|b| MasterKey::from_bytes(&b).unwrap())
}

/// Names as they come: empty, short, long enough to leave the stack buffer, any characters.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z]{1,4}", ".{0,40}", "[a-z:0-9-]{200,300}"]
}

fn plaintext() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2048)
}

proptest! {
    #[test]
    fn fields_round_trip(
        key in data_key(), organization in uuid(), data_key_id in uuid(),
        record in name(), field in name(), plaintext in plaintext(),
    ) {
        let ctx = FieldContext { organization, data_key: data_key_id, record: &record, field: &field };
        let sealed = encrypt_field(&key, &ctx, &plaintext);
        prop_assert_eq!(sealed.len(), plaintext.len() + custos_vault::FIELD_OVERHEAD);
        prop_assert_eq!(sealed_data_key_id(&sealed).unwrap(), data_key_id);
        prop_assert_eq!(&decrypt_field(&key, &ctx, &sealed).unwrap()[..], &plaintext[..]);
    }

    #[test]
    fn any_flipped_bit_of_a_field_is_refused(
        key in data_key(), record in name(), field in name(), plaintext in plaintext(),
        at in any::<Index>(), bit in 0u8..8,
    ) {
        let ctx = FieldContext { organization: Uuid::new_v4(), data_key: Uuid::new_v4(), record: &record, field: &field };
        let mut sealed = encrypt_field(&key, &ctx, &plaintext);
        let at = at.index(sealed.len());
        sealed[at] ^= 1 << bit;
        let refused = decrypt_field(&key, &ctx, &sealed).unwrap_err();
        // The format's own bytes (magic, version, algorithm) say it is not a v1 field; past them,
        // one error for everything.
        if at < 4 {
            prop_assert!(matches!(refused, VaultError::Malformed(_)), "{:?}", refused);
        } else {
            prop_assert_eq!(refused, VaultError::Decrypt);
        }
    }

    #[test]
    fn truncated_or_extended_fields_are_refused(
        key in data_key(), plaintext in plaintext(), cut in any::<Index>(), extra in prop::collection::vec(any::<u8>(), 1..20),
    ) {
        let ctx = FieldContext { organization: Uuid::new_v4(), data_key: Uuid::new_v4(), record: "r", field: "f" };
        let sealed = encrypt_field(&key, &ctx, &plaintext);
        prop_assert!(decrypt_field(&key, &ctx, &sealed[..cut.index(sealed.len())]).is_err());
        prop_assert!(decrypt_field(&key, &ctx, &[&sealed[..], &extra[..]].concat()).is_err());
    }

    #[test]
    fn any_other_context_is_refused(
        key in data_key(), other_key in data_key(), organization in uuid(), data_key_id in uuid(),
        record in name(), field in name(), plaintext in plaintext(),
        other_organization in uuid(), other_data_key in uuid(), other_record in name(), other_field in name(),
    ) {
        let ctx = FieldContext { organization, data_key: data_key_id, record: &record, field: &field };
        let sealed = encrypt_field(&key, &ctx, &plaintext);
        let mut others = vec![
            FieldContext { organization: other_organization, ..ctx },
            FieldContext { data_key: other_data_key, ..ctx },
            FieldContext { record: &other_record, ..ctx },
            FieldContext { field: &other_field, ..ctx },
            // The same characters split differently between record and field.
            FieldContext { record: &field, field: &record, ..ctx },
        ];
        others.retain(|o| *o != ctx);
        for other in others {
            prop_assert_eq!(decrypt_field(&key, &other, &sealed).unwrap_err(), VaultError::Decrypt, "{:?}", other);
        }
        if other_key.expose_secret() != key.expose_secret() {
            prop_assert_eq!(decrypt_field(&other_key, &ctx, &sealed).unwrap_err(), VaultError::Decrypt);
        }
    }

    #[test]
    fn concatenations_never_collide(a in "[ab]{0,6}", b in "[ab]{0,6}", c in "[ab]{0,6}", d in "[ab]{0,6}") {
        prop_assume!((a.as_str(), b.as_str()) != (c.as_str(), d.as_str()));
        let key = DataKey::generate();
        let ctx = FieldContext { organization: Uuid::nil(), data_key: Uuid::nil(), record: &a, field: &b };
        let sealed = encrypt_field(&key, &ctx, b"x");
        let other = FieldContext { record: &c, field: &d, ..ctx };
        prop_assert_eq!(decrypt_field(&key, &other, &sealed).unwrap_err(), VaultError::Decrypt);
    }

    #[test]
    fn wrapped_keys_round_trip_and_refuse_tampering(
        master in master_key(), key in data_key(), organization in uuid(), data_key_id in uuid(),
        at in any::<Index>(), bit in 0u8..8, other_organization in uuid(), other_data_key in uuid(),
    ) {
        let provider = LocalKeyProvider::new(&MasterKeys::new(master, []));
        let ctx = WrapContext { organization, data_key: data_key_id };
        let wrapped = provider.wrap(&key, &ctx).unwrap();
        let stored = wrapped.to_bytes();
        let read = WrappedKey::from_bytes(&stored).unwrap();
        let unwrapped = provider.unwrap(&read, &ctx).unwrap();
        prop_assert_eq!(unwrapped.expose_secret(), key.expose_secret());

        let mut altered = stored.clone();
        let at = at.index(altered.len());
        altered[at] ^= 1 << bit;
        let refused = WrappedKey::from_bytes(&altered).and_then(|w| provider.unwrap(&w, &ctx));
        match at {
            0..4 => prop_assert!(matches!(refused, Err(VaultError::Malformed(_))), "{:?}", refused),
            4..12 => prop_assert!(matches!(refused, Err(VaultError::UnknownKeyVersion(_))), "{:?}", refused),
            _ => prop_assert!(matches!(refused, Err(VaultError::Decrypt)), "{:?}", refused),
        }
        for other in [
            WrapContext { organization: other_organization, ..ctx },
            WrapContext { data_key: other_data_key, ..ctx },
        ] {
            if other != ctx {
                prop_assert_eq!(provider.unwrap(&wrapped, &other).unwrap_err(), VaultError::Decrypt);
            }
        }
    }

    #[test]
    fn rewrapping_to_a_new_master_key_keeps_every_field_readable(
        old in master_bytes(), new in master_bytes(), organization in uuid(), data_key_id in uuid(),
        values in prop::collection::vec(plaintext(), 1..5),
    ) {
        let master = |bytes: &[u8]| MasterKey::from_bytes(bytes).unwrap();
        let (old_id, new_id) = (master(&old).id(), master(&new).id());
        prop_assume!(old_id != new_id);
        let before = LocalKeyProvider::new(&MasterKeys::new(master(&old), []));
        let wrap_ctx = WrapContext { organization, data_key: data_key_id };
        let (key, wrapped) = before.generate(&wrap_ctx).unwrap();
        let field_ctx = FieldContext { organization, data_key: data_key_id, record: "secret:1", field: "value" };
        let sealed: Vec<Vec<u8>> = values.iter().map(|v| encrypt_field(&key, &field_ctx, v)).collect();

        // Rotation: the new key current, the old one previous; rewrap every data key.
        let rotated = LocalKeyProvider::new(&MasterKeys::new(master(&new), [master(&old)]));
        let moved = rewrap(&rotated, &wrapped, &wrap_ctx).unwrap().expect("under the old KEK");
        prop_assert_eq!(moved.kek(), new_id);
        prop_assert!(!moved.as_bytes().windows(8).any(|w| w == old_id.to_bytes()), "the old KEK id is gone");
        prop_assert_eq!(rewrap(&rotated, &moved, &wrap_ctx).unwrap(), None);

        // The old key retired: the rewrapped key still unwraps, the old form no longer does, and
        // every field sealed before the rotation decrypts with the unwrapped data key.
        let retired = LocalKeyProvider::new(&MasterKeys::new(master(&new), []));
        prop_assert_eq!(retired.versions(), vec![new_id]);
        prop_assert_eq!(
            retired.unwrap(&wrapped, &wrap_ctx).unwrap_err(),
            VaultError::UnknownKeyVersion(old_id.to_string())
        );
        let unwrapped = retired.unwrap(&moved, &wrap_ctx).unwrap();
        prop_assert_eq!(unwrapped.expose_secret(), key.expose_secret());
        for (value, sealed) in values.iter().zip(&sealed) {
            prop_assert_eq!(&decrypt_field(&unwrapped, &field_ctx, sealed).unwrap()[..], &value[..]);
        }
    }

    #[test]
    fn masks_take_any_text(text in ".{0,64}") {
        // No panic, and nothing longer than a bounded function of the input.
        let chars = text.chars().count();
        prop_assert!(mask::mask_email(&text).chars().count() <= chars + 3);
        prop_assert!(mask::mask_phone(&text).chars().count() <= 8);
        prop_assert!(mask::mask_name(&text).chars().count() <= chars);
        prop_assert!(mask::mask_card(&text).chars().count() <= chars);
        prop_assert!(mask::mask_iban(&text).chars().count() <= chars);
    }

    #[test]
    fn email_masks_show_at_most_two_characters_of_the_local_part(local in ".{0,30}", domain in "[a-z.]{1,20}") {
        prop_assume!(!local.contains('@') && local.trim() == local);
        let masked = mask::mask_email(&format!("{local}@{domain}"));
        let (shown, rest) = masked.rsplit_once('@').unwrap();
        prop_assert_eq!(rest, domain.as_str());
        let n = local.chars().count();
        if n < 3 {
            prop_assert_eq!(shown, "***");
        } else {
            // The first character, `***`, the last: nothing else of the local part.
            let chars: Vec<char> = shown.chars().collect();
            prop_assert_eq!(chars.len(), 5);
            prop_assert_eq!(chars[0], local.chars().next().unwrap());
            prop_assert_eq!(&chars[1..4], &['*'; 3][..]);
            prop_assert_eq!(chars[4], local.chars().last().unwrap());
        }
    }

    #[test]
    fn phone_and_card_masks_show_few_digits(digits in "[0-9]{0,25}") {
        let phone_shown = mask::mask_phone(&digits).chars().filter(char::is_ascii_digit).count();
        prop_assert_eq!(phone_shown, if digits.len() >= 5 { 4 } else { 0 });
        let card = mask::mask_card(&digits);
        let card_shown = card.chars().filter(char::is_ascii_digit).count();
        prop_assert_eq!(card_shown, if digits.len() >= 13 { 10 } else { 0 });
        prop_assert_eq!(card.len(), digits.len());
    }
}

fn master_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 32..64)
}

/// Every single bit of one sealed value flipped in turn, exhaustively.
#[test]
fn every_flipped_bit_is_refused() {
    let key = DataKey::generate();
    let ctx =
        FieldContext { organization: Uuid::new_v4(), data_key: Uuid::new_v4(), record: "secret:1", field: "value" };
    let sealed = encrypt_field(&key, &ctx, b"sk_live_0123456789");
    for at in 0..sealed.len() {
        for bit in 0..8 {
            let mut altered = sealed.clone();
            altered[at] ^= 1 << bit;
            assert!(decrypt_field(&key, &ctx, &altered).is_err(), "byte {at} bit {bit}");
        }
    }
    let provider = LocalKeyProvider::new(&MasterKeys::new(MasterKey::generate().unwrap(), []));
    let wrap_ctx = WrapContext { organization: ctx.organization, data_key: ctx.data_key };
    let wrapped = provider.wrap(&key, &wrap_ctx).unwrap().to_bytes();
    for at in 0..wrapped.len() {
        for bit in 0..8 {
            let mut altered = wrapped.clone();
            altered[at] ^= 1 << bit;
            assert!(WrappedKey::from_bytes(&altered).and_then(|w| provider.unwrap(&w, &wrap_ctx)).is_err());
        }
    }
}
