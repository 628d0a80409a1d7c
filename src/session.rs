//! Browser sessions for the web UI: signing in with an API token opens a session whose id
//! lives in an HttpOnly, SameSite=Strict cookie; every unsafe request must also carry the
//! session's CSRF token in a header.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use rand::{distributions::Alphanumeric, Rng};

use crate::store::ApiToken;

pub const COOKIE: &str = "hookd_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone)]
pub struct Session {
    pub token: ApiToken,
    pub csrf: String,
    expires: Instant,
}

/// Sessions live in memory: a restart of hookd signs everyone out, which is acceptable for
/// a UI behind an API token.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

fn random(n: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(n).map(char::from).collect()
}

impl Sessions {
    /// Opens a session for `token`; returns its id (for the cookie) and the session.
    pub fn open(&self, token: ApiToken) -> (String, Session) {
        let id = random(40);
        let session = Session { token, csrf: random(32), expires: Instant::now() + LIFETIME };
        let mut map = self.0.lock().expect("session lock");
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let map = self.0.lock().expect("session lock");
        map.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub fn close(&self, id: &str) {
        self.0.lock().expect("session lock").remove(id);
    }
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == COOKIE).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(cookie_value("a=1; hookd_session=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("hookd_session=xyz"), Some("xyz"));
        assert_eq!(cookie_value("other=1"), None);
    }
}
