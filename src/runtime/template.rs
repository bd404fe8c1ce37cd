//! What a replica runs, recorded on the container (label [`LABEL_TEMPLATE`]) so that
//! `diff` can say what changed in a template, not only that its hash did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ReplicaSpec;

/// Label holding a replica's [`TemplateSummary`] as compact JSON.
pub const LABEL_TEMPLATE: &str = "autoscaler.dev/template";

/// The parts of a replica's spec that its template decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSummary {
    /// Image reference.
    pub image: String,
    /// Entrypoint arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Port the process listens on inside the container.
    pub container_port: u16,
    /// CPU limit in 1e-9 CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// Host IP the replica publishes on.
    #[serde(default)]
    pub host_ip: String,
}

impl TemplateSummary {
    /// The summary of what `spec` runs.
    pub fn of(spec: &ReplicaSpec) -> Self {
        Self {
            image: spec.image.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            container_port: spec.container_port,
            nano_cpus: spec.nano_cpus,
            memory_bytes: spec.memory_bytes,
            host_ip: spec.host_ip.clone(),
        }
    }

    /// The label value (compact JSON).
    pub fn to_label(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a label value; `None` when absent or unreadable (older replicas).
    pub fn from_label(value: Option<&str>) -> Option<Self> {
        value.and_then(|v| serde_json::from_str(v).ok())
    }

    /// What changed from `self` to `new`, one phrase per field, e.g.
    /// `image demo:1 → demo:2`, `env MODE added`, `env DEBUG removed`, `cpus 0.5 → 1`.
    /// Env values are not printed (they may be secrets).
    pub fn changes_to(&self, new: &TemplateSummary) -> Vec<String> {
        let mut out = Vec::new();
        if self.image != new.image {
            out.push(format!("image {} → {}", self.image, new.image));
        }
        if self.args != new.args {
            out.push(format!("args {:?} → {:?}", self.args, new.args));
        }
        for (k, v) in &new.env {
            match self.env.get(k) {
                None => out.push(format!("env {k} added")),
                Some(old) if old != v => out.push(format!("env {k} changed")),
                Some(_) => {}
            }
        }
        for k in self.env.keys().filter(|k| !new.env.contains_key(*k)) {
            out.push(format!("env {k} removed"));
        }
        if self.container_port != new.container_port {
            out.push(format!(
                "containerPort {} → {}",
                self.container_port, new.container_port
            ));
        }
        if self.nano_cpus != new.nano_cpus {
            let cpus = |n: Option<i64>| {
                n.map_or("unlimited".to_owned(), |n| format!("{}", n as f64 / 1e9))
            };
            out.push(format!(
                "cpus {} → {}",
                cpus(self.nano_cpus),
                cpus(new.nano_cpus)
            ));
        }
        if self.memory_bytes != new.memory_bytes {
            let mem = |n: Option<i64>| n.map_or("unlimited".to_owned(), |n| format!("{n} bytes"));
            out.push(format!(
                "memory {} → {}",
                mem(self.memory_bytes),
                mem(new.memory_bytes)
            ));
        }
        if self.host_ip != new.host_ip {
            out.push(format!("hostIp {} → {}", self.host_ip, new.host_ip));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> TemplateSummary {
        TemplateSummary {
            image: "demo:1".into(),
            args: vec!["--port".into(), "8000".into()],
            env: BTreeMap::from([("MODE".into(), "slow".into()), ("OLD".into(), "x".into())]),
            container_port: 8000,
            nano_cpus: Some(500_000_000),
            memory_bytes: None,
            host_ip: "127.0.0.1".into(),
        }
    }

    #[test]
    fn changes_are_named_field_by_field_without_env_values() {
        let old = summary();
        assert!(old.changes_to(&old).is_empty());
        let mut new = summary();
        new.image = "demo:2".into();
        new.env = BTreeMap::from([
            ("MODE".into(), "secret-fast".into()),
            ("NEW".into(), "y".into()),
        ]);
        new.nano_cpus = Some(1_000_000_000);
        let changes = old.changes_to(&new);
        assert_eq!(
            changes,
            vec![
                "image demo:1 → demo:2",
                "env MODE changed",
                "env NEW added",
                "env OLD removed",
                "cpus 0.5 → 1",
            ]
        );
        assert!(
            !changes.join(" ").contains("secret"),
            "env values stay private"
        );
    }

    #[test]
    fn the_label_round_trips_and_a_missing_one_is_none() {
        let s = summary();
        assert_eq!(TemplateSummary::from_label(Some(&s.to_label())), Some(s));
        assert_eq!(TemplateSummary::from_label(None), None);
        assert_eq!(TemplateSummary::from_label(Some("not json")), None);
    }
}
