//! `gitgate env`: the variables a sandbox needs, for sh, dotenv files or Kubernetes.

use crate::cli::EnvFormat;

/// Variables that make clients trust a CA file (each client reads its own).
const CA_VARIABLES: [&str; 5] = [
    "GIT_SSL_CAINFO",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
];

/// The `(name, value)` pairs for a sandbox.
pub(crate) fn variables(proxy_url: &str, ca_file: &str) -> Vec<(&'static str, String)> {
    let no_proxy = "localhost,127.0.0.1,::1".to_owned();
    let mut vars = vec![
        ("HTTPS_PROXY", proxy_url.to_owned()),
        ("HTTP_PROXY", proxy_url.to_owned()),
        ("https_proxy", proxy_url.to_owned()),
        ("http_proxy", proxy_url.to_owned()),
        ("NO_PROXY", no_proxy.clone()),
        ("no_proxy", no_proxy),
    ];
    vars.extend(CA_VARIABLES.iter().map(|name| (*name, ca_file.to_owned())));
    vars
}

/// Renders the variables in `format`.
pub(crate) fn render(vars: &[(&str, String)], format: EnvFormat) -> String {
    let mut out = String::new();
    for (name, value) in vars {
        let line = match format {
            EnvFormat::Sh => format!("export {name}='{}'\n", value.replace('\'', r"'\''")),
            EnvFormat::Dotenv => format!("{name}={value}\n"),
            EnvFormat::K8s => format!("- name: {name}\n  value: {}\n", serde_json_string(value)),
        };
        out.push_str(&line);
    }
    out
}

/// A YAML-safe double-quoted scalar (JSON string syntax is valid YAML).
fn serde_json_string(value: &str) -> String {
    let mut quoted = String::from('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let vars = variables("http://gitgate:3128", "/etc/gitgate/ca.pem");
        let sh = render(&vars, EnvFormat::Sh);
        assert!(sh.contains("export HTTPS_PROXY='http://gitgate:3128'\n"));
        assert!(sh.contains("export NODE_EXTRA_CA_CERTS='/etc/gitgate/ca.pem'\n"));
        let dotenv = render(&vars, EnvFormat::Dotenv);
        assert!(dotenv.contains("GIT_SSL_CAINFO=/etc/gitgate/ca.pem\n"));
        let k8s = render(&vars, EnvFormat::K8s);
        assert!(k8s.contains("- name: NO_PROXY\n  value: \"localhost,127.0.0.1,::1\"\n"));
        let parsed: serde_yaml::Value = serde_yaml::from_str(&k8s).unwrap();
        assert_eq!(parsed.as_sequence().unwrap().len(), vars.len());
    }

    #[test]
    fn sh_quotes_survive_hostile_paths() {
        let sh = render(&[("X", "a'b".to_owned())], EnvFormat::Sh);
        assert_eq!(sh, "export X='a'\\''b'\n");
    }
}
