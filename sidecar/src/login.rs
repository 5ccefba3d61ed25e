//! `gitgate login`, `status` and `logout`: the operator's side of the device flow, talking
//! to the running gitgate (its admin listener when configured, else the proxy port).

use std::time::{Duration, Instant};

use crate::health::call;

/// How often `gitgate login` asks whether the person has entered the code.
const POLL: Duration = Duration::from_secs(1);
/// GitHub's device codes live 15 minutes; give up a little after.
const GIVE_UP: Duration = Duration::from_secs(16 * 60);

/// Where the login endpoints of `base` are, for `profile` (gitgate's default without).
fn endpoint(base: &str, path: &str, profile: Option<&str>) -> String {
    let base = base.trim_end_matches('/');
    match profile {
        Some(profile) => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("profile", profile)
                .finish();
            format!("{base}{path}?{query}")
        }
        None => format!("{base}{path}"),
    }
}

/// Starts a login, prints what the person must do, and (with `wait`) waits for the
/// outcome. Errors carry gitgate's own words.
pub(crate) fn login(base: &str, profile: Option<&str>, wait: bool) -> Result<(), String> {
    let (status, text) = call("POST", &endpoint(base, "/login", profile), false)?;
    if status != 200 {
        return Err(text.trim_end().trim_start_matches("gitgate: ").to_owned());
    }
    say!("{}", text.trim_end());
    if !wait {
        return Ok(());
    }
    let started = Instant::now();
    loop {
        std::thread::sleep(POLL);
        let (_, json) = call("GET", &endpoint(base, "/login", profile), true)?;
        let state: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| format!("unreadable answer: {e}"))?;
        if state.get("userCode").is_none() {
            let (_, text) = call("GET", &endpoint(base, "/login", profile), false)?;
            return if state["state"] == "loggedIn" {
                say!("{}", text.trim_end());
                Ok(())
            } else {
                Err(format!("login failed\n{}", text.trim_end()))
            };
        }
        if started.elapsed() > GIVE_UP {
            return Err("gave up waiting for the code to be entered".into());
        }
    }
}

/// Prints who is logged in (for every profile when none is named and there are
/// profiles); succeeds only when every session shown is logged in.
pub(crate) fn status(base: &str, profile: Option<&str>) -> Result<bool, String> {
    let (code, json) = call("GET", &endpoint(base, "/login", profile), true)?;
    let (_, text) = call("GET", &endpoint(base, "/login", profile), false)?;
    if code != 200 {
        return Err(text.trim_end().trim_start_matches("gitgate: ").to_owned());
    }
    say!("{}", text.trim_end());
    let shown: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("unreadable answer: {e}"))?;
    let logged_in = |s: &serde_json::Value| s["state"] == "loggedIn";
    Ok(match shown.as_array() {
        Some(all) => !all.is_empty() && all.iter().all(logged_in),
        None => logged_in(&shown),
    })
}

/// Logs out and prints what happened.
pub(crate) fn logout(base: &str, profile: Option<&str>) -> Result<(), String> {
    let (status, text) = call("POST", &endpoint(base, "/logout", profile), false)?;
    let text = text.trim_end().trim_start_matches("gitgate: ");
    if status != 200 {
        return Err(text.to_owned());
    }
    say!("{text}");
    Ok(())
}
