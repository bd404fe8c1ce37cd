//! What a dry run would leave in nginx: the config `diff` compares with the live one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::{Operator, PolicyReport, ReconcileError, observe};
use crate::lb::LoadBalancer;
use crate::plan::Step;
use crate::policy::ScalingPolicy;
use crate::runtime::Runtime;

impl<R: Runtime + 'static, L: LoadBalancer> Operator<R, L> {
    /// The nginx config in place and the one the table renders after these dry-run
    /// reports (`diff`): each report's last upstream step, removals dropped.
    pub async fn config_diff(
        &self,
        reports: &[(PolicyReport, Option<&ScalingPolicy>)],
    ) -> Result<(String, String), ReconcileError> {
        let before = self.lb.current().await?.unwrap_or_default();
        let mut servers = BTreeMap::new();
        let mut dropped = BTreeSet::new();
        for (report, policy) in reports {
            let Some(policy) = policy else {
                dropped.insert(report.policy.clone());
                continue;
            };
            let current = self.table.servers(&report.policy).await;
            let last = report.plan.steps.iter().rev().find_map(|s| match s {
                Step::SetUpstream { ports, .. } => Some(ports.clone()),
                _ => None,
            });
            if let Some(ports) = last {
                let addrs: BTreeMap<u16, SocketAddr> =
                    current.iter().map(|a| (a.port(), *a)).collect();
                let after = ports
                    .iter()
                    .filter_map(|p| {
                        addrs
                            .get(p)
                            .copied()
                            .or_else(|| Some(observe::route_addr(policy.parsed.host_ip, *p)))
                    })
                    .collect();
                servers.insert(report.policy.clone(), after);
            }
        }
        let after = self
            .table
            .render_after(&self.lb, &servers, &dropped)
            .await?;
        Ok((before, after))
    }
}
