//! Which waiting room a queue is: its name within a clinic.

use std::fmt;

/// A waiting room. Queues are scoped by clinic: `general` of one clinic and
/// `general` of another are two lines with their own tickets, and nobody of
/// one sees the other's patients. Consultations without a clinic share the
/// clinic-less scope. A patient's consultation names its queue; a watcher's
/// token names the clinic (its `clinic` claim).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueId {
    clinic: Option<String>,
    name: String,
}

impl QueueId {
    /// The queue `name` of `clinic`; an empty clinic is no clinic.
    pub fn new(clinic: Option<&str>, name: &str) -> Self {
        QueueId { clinic: clinic.filter(|c| !c.is_empty()).map(str::to_owned), name: name.to_owned() }
    }

    /// The queue's name, as frames and the HTTP API show it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The clinic whose queue it is.
    pub fn clinic(&self) -> Option<&str> {
        self.clinic.as_deref()
    }

    /// The clinic as storage keeps it: the empty string for none.
    pub fn clinic_key(&self) -> &str {
        self.clinic.as_deref().unwrap_or("")
    }

    /// One string per queue, for broker channels and keys: the clinic with
    /// its length in front, then the name, so no two queues share one
    /// whatever characters a token's clinic holds.
    pub fn key(&self) -> String {
        match &self.clinic {
            Some(clinic) => format!("{}.{clinic}/{}", clinic.len(), self.name),
            None => format!("/{}", self.name),
        }
    }
}

/// `name` or `name@clinic`, for logs.
impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.clinic {
            Some(clinic) => write!(f, "{}@{clinic}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_in_two_clinics_is_two_queues() {
        let (a, b) = (QueueId::new(Some("k1"), "general"), QueueId::new(Some("k2"), "general"));
        assert_ne!(a, b);
        assert_ne!(a.key(), b.key());
        assert_eq!(a.name(), b.name());
        assert_ne!(QueueId::new(None, "general"), a);
    }

    #[test]
    fn an_empty_clinic_is_no_clinic() {
        assert_eq!(QueueId::new(Some(""), "q"), QueueId::new(None, "q"));
        assert_eq!(QueueId::new(None, "q").clinic_key(), "");
    }

    #[test]
    fn keys_do_not_collide_whatever_the_clinic_holds() {
        let tricky = [
            QueueId::new(Some("a/b"), "c"),
            QueueId::new(Some("a"), "b/c"),
            QueueId::new(None, "a/b/c"),
            QueueId::new(Some("1.a"), "c"),
            QueueId::new(Some("a"), "c"),
        ];
        let keys: std::collections::HashSet<String> = tricky.iter().map(QueueId::key).collect();
        assert_eq!(keys.len(), tricky.len(), "{keys:?}");
    }
}
