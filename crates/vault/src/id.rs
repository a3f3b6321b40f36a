//! Blob ids: 26 random characters of a lowercase Crockford base32 alphabet (130 bits).

use object_store::path::Path;
use rand::RngCore;

/// The id alphabet (Crockford base32, lowercase: no i, l, o, u).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Length of an id.
pub(crate) const ID_LEN: usize = 26;

/// A fresh random id.
pub(crate) fn new_id() -> String {
    let mut raw = [0u8; ID_LEN];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    raw.iter().map(|b| ALPHABET[(b & 31) as usize] as char).collect()
}

/// True when `s` is shaped like an id this vault generates.
pub(crate) fn is_valid_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| ALPHABET.contains(&b))
}

/// Object key of a (valid) id: `ab/cd/<id>`.
pub(crate) fn object_path(id: &str) -> Path {
    Path::from(format!("{}/{}/{}", &id[0..2], &id[2..4], id))
}

/// The id of an object key if the key has exactly the `ab/cd/<id>` shape.
pub(crate) fn id_of_path(p: &Path) -> Option<String> {
    let parts: Vec<_> = p.parts().collect();
    let [a, b, id] = parts.as_slice() else {
        return None;
    };
    let id = id.as_ref();
    (is_valid_id(id) && a.as_ref() == &id[0..2] && b.as_ref() == &id[2..4]).then(|| id.to_string())
}

/// A short, printable rendering of a caller-supplied id for error messages.
pub(crate) fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).flat_map(char::escape_default).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_valid_distinct_and_fan_out() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(is_valid_id(&a));
        let p = object_path(&a);
        assert_eq!(p.as_ref(), format!("{}/{}/{}", &a[..2], &a[2..4], a));
        assert_eq!(id_of_path(&p), Some(a));
    }

    #[test]
    fn ids_outside_the_alphabet_are_refused() {
        for bad in [
            "",
            "../../../../etc/passwd",
            "0123456789ABCDEFGHJKMNPQRS",
            "0123456789abcdefghjkmnpqr",
            "0123456789abcdefghjkmnpqrst",
            "0123456789abcdefghjkmnpqr/",
            "0123456789abcdefghjkmnpqri",
            "_kontor/keycheck",
        ] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn only_fan_out_paths_map_to_ids() {
        let id = "0123456789abcdefghjkmnpqrs";
        assert_eq!(id_of_path(&Path::from(format!("01/23/{id}"))).as_deref(), Some(id));
        assert_eq!(id_of_path(&Path::from(format!("01/24/{id}"))), None);
        assert_eq!(id_of_path(&Path::from(format!("x/01/23/{id}"))), None);
        assert_eq!(id_of_path(&Path::from("_kontor/keycheck")), None);
    }
}
