//! Which records each runner takes, read from the topology: plain functions, no I/O.

use std::collections::HashMap;

use hub_schemas::Entity;
use hub_topology::{Target, TargetKind, Topology};

/// Tenant → entity → the SQL target that entity is routed to. All SQL targets share the node's
/// one database, so a record is written once even if a tenant names two SQL targets.
#[derive(Debug, Clone, Default)]
pub struct SqlRoutes {
    by_tenant: HashMap<String, HashMap<Entity, String>>,
}

impl SqlRoutes {
    pub fn from_topology(topology: &Topology) -> Self {
        let mut by_tenant: HashMap<String, HashMap<Entity, String>> = HashMap::new();
        for tenant in &topology.tenants {
            for entity in Entity::ALL {
                if let Some(t) = tenant
                    .targets_for(entity)
                    .into_iter()
                    .find(|t| matches!(t.kind, TargetKind::Sql))
                {
                    by_tenant
                        .entry(tenant.id.clone())
                        .or_default()
                        .insert(entity, t.id.clone());
                }
            }
        }
        SqlRoutes { by_tenant }
    }

    /// The SQL target `tenant` routes `entity` to, if any.
    pub fn target(&self, tenant: &str, entity: Entity) -> Option<&str> {
        self.by_tenant.get(tenant)?.get(&entity).map(String::as_str)
    }

    /// The entities some tenant routes to SQL, in `Entity::ALL` order.
    pub fn entities(&self) -> Vec<Entity> {
        Entity::ALL
            .into_iter()
            .filter(|e| self.by_tenant.values().any(|m| m.contains_key(e)))
            .collect()
    }
}

/// One API target of one tenant and the entities routed to it.
#[derive(Debug, Clone)]
pub struct ApiRoute {
    pub tenant: String,
    pub target: Target,
    pub entities: Vec<Entity>,
}

/// Every (tenant, webhook target) that has at least one entity routed to it.
pub fn webhook_routes(topology: &Topology) -> Vec<ApiRoute> {
    let mut out = Vec::new();
    for tenant in &topology.tenants {
        for target in tenant
            .targets
            .iter()
            .filter(|t| matches!(t.kind, TargetKind::Webhook { .. }))
        {
            let entities: Vec<Entity> = Entity::ALL
                .into_iter()
                .filter(|e| tenant.targets_for(*e).iter().any(|t| t.id == target.id))
                .collect();
            if !entities.is_empty() {
                out.push(ApiRoute {
                    tenant: tenant.id.clone(),
                    target: target.clone(),
                    entities,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        let json = serde_json::json!({
            "version": 1,
            "tenants": [
                {"id": "acme", "targets": [
                    {"id": "warehouse", "kind": "sql"},
                    {"id": "crm-hook", "kind": "webhook", "url": "http://127.0.0.1:1/h", "secret": "s", "batch_size": 10}
                ], "routes": [
                    {"entities": ["customer", "vehicle"], "targets": ["warehouse"]},
                    {"entities": ["customer"], "targets": ["crm-hook"]}
                ]},
                {"id": "beta", "targets": [{"id": "db", "kind": "sql"}],
                 "routes": [{"entities": ["deal"], "targets": ["db"]}]}
            ]
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn sql_routes_follow_each_tenants_routes() {
        let r = SqlRoutes::from_topology(&topology());
        assert_eq!(r.target("acme", Entity::Customer), Some("warehouse"));
        assert_eq!(r.target("acme", Entity::Deal), None);
        assert_eq!(r.target("beta", Entity::Deal), Some("db"));
        assert_eq!(r.target("nobody", Entity::Deal), None);
        assert_eq!(
            r.entities(),
            vec![Entity::Customer, Entity::Vehicle, Entity::Deal]
        );
    }

    #[test]
    fn webhook_routes_list_each_target_with_its_entities() {
        let w = webhook_routes(&topology());
        assert_eq!(w.len(), 1);
        assert_eq!(
            (w[0].tenant.as_str(), w[0].target.id.as_str()),
            ("acme", "crm-hook")
        );
        assert_eq!(w[0].entities, vec![Entity::Customer]);
    }
}
