//! One ref-update command of a push.

use crate::object_id::ObjectId;

/// One command of a push: `old new name`. The name is kept raw and validated when the
/// policy decides, so that the user gets a per-ref reason.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RefUpdate {
    /// The ref's current value as the client sees it (zero for a create).
    pub old: ObjectId,
    /// The requested value (zero for a delete).
    pub new: ObjectId,
    /// The full ref name as sent.
    pub name: String,
}

impl RefUpdate {
    /// Whether the ref is created (old id is zero).
    pub fn is_create(&self) -> bool {
        self.old.is_zero()
    }

    /// Whether the ref is deleted (new id is zero).
    pub fn is_delete(&self) -> bool {
        self.new.is_zero()
    }

    /// Whether the ref is a tag (`refs/tags/…`): git never moves one by fast-forward.
    pub fn is_tag(&self) -> bool {
        self.name.starts_with("refs/tags/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_id::ObjectFormat;

    #[test]
    fn kinds() {
        let zero = ObjectId::zero(ObjectFormat::Sha1);
        let id = ObjectId::parse(&"1".repeat(40)).unwrap();
        for (old, new, create, delete) in [
            (&zero, &id, true, false),
            (&id, &zero, false, true),
            (&id, &id, false, false),
        ] {
            let update = RefUpdate {
                old: old.clone(),
                new: new.clone(),
                name: "refs/heads/main".into(),
            };
            assert_eq!((update.is_create(), update.is_delete()), (create, delete));
        }
    }
}
