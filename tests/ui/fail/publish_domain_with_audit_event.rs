use eventbus::{AuditEvent, EventBus, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// A user signed in.
#[derive(AuditEvent, Serialize, Deserialize)]
#[event(audit_category = "security")]
pub struct UserSignedIn {
    #[event(actor)]
    pub user: String,
}

async fn run(bus: EventBus<Petstore>) {
    let _ = bus.publish_domain(&UserSignedIn { user: "ann".into() }).await;
}

fn main() {}
