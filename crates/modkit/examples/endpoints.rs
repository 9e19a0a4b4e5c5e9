//! A host whose devices are configured HTTP endpoints and whose driver modules bind them:
//! each endpoint is a device on the `endpoint` bus with the modalias
//! `endpoint:http:PATH`; the `api` module's driver binds `/api/*`, the `health` module's
//! `/health`. A driver's probe publishes the endpoint's handler as a [`Devres`] in the
//! program's router; its remove takes the route down; the unbind then revokes the handler,
//! waiting for the requests in flight.
//!
//! A request-generator thread calls handlers through `Devres` guards while the main
//! thread unbinds an endpoint, binds it again, and unloads the `api` module (whose exit
//! unbinds its endpoints). With autoload on, adding the endpoints loads the modules
//! (udev's `modprobe MODALIAS`).
//!
//! Run: `cargo run --release -p modkit --example endpoints`

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use modkit::{Device, DeviceDriver, Devres, Host, Module};

/// A request handler: module code.
type Handler = Box<dyn Fn(&str) -> String + Send + Sync>;

/// The program's router: path → the handler of the endpoint's driver.
#[derive(Default)]
struct Router {
    routes: RwLock<HashMap<String, Devres<Handler>>>,
    served: AtomicU64,
    refused_unbound: AtomicU64,
    refused_revoked: AtomicU64,
    /// Requests served per path.
    per_path: RwLock<HashMap<String, u64>>,
}

impl Router {
    /// One request: through the endpoint's Devres guard, or refused.
    fn request(&self, path: &str) {
        let route = self.routes.read().unwrap().get(path).cloned();
        let Some(route) = route else {
            self.refused_unbound.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(handler) = route.try_access() else {
            // Unbound between the lookup and the call: the guard is refused.
            self.refused_revoked.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let _response = handler(path);
        std::thread::sleep(Duration::from_micros(50)); // the request is in flight
                                                       // Counted while the guard is held: an unbind returns only after this.
        self.served.fetch_add(1, Ordering::Relaxed);
        *self
            .per_path
            .write()
            .unwrap()
            .entry(path.to_string())
            .or_default() += 1;
        drop(handler);
    }

    fn served_on(&self, path: &str) -> u64 {
        self.per_path
            .read()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// A driver module binding the endpoints whose path matches `pattern`.
fn endpoint_module(module: &str, pattern: &str, router: &Arc<Router>) -> Module {
    let (rp, rr) = (router.clone(), router.clone());
    let who = module.to_string();
    Module::new(module).driver(
        DeviceDriver::new(module, "endpoint")
            .matches(&format!("endpoint:http:{pattern}"))
            .probe(move |ctx| {
                let path = ctx
                    .modalias()
                    .and_then(|m| m.strip_prefix("endpoint:http:").map(str::to_string))
                    .unwrap_or_default();
                let who = who.clone();
                let handler: Handler = Box::new(move |p| format!("{who} answers {p}"));
                let h = ctx.devm_named("handler", handler)?;
                rp.routes.write().unwrap().insert(path, h);
                Ok(())
            })
            .remove(move |ctx| {
                if let Some(m) = ctx.modalias() {
                    let path = m.trim_start_matches("endpoint:http:");
                    rr.routes.write().unwrap().remove(path);
                }
            }),
    )
}

fn main() -> Result<(), modkit::Error> {
    let host = Host::new("modkit".parse().expect("policy"));
    host.add_bus("endpoint")?;
    let router = Arc::new(Router::default());
    host.add_module(endpoint_module("api", "/api/*", &router))?;
    host.add_module(endpoint_module("health", "/health", &router))?;
    host.set_device_autoload(true);

    let paths = ["/api/users", "/api/orders", "/health"];
    for (i, p) in paths.iter().enumerate() {
        host.add_device(
            Device::new(&format!("ep{i}"), "endpoint").modalias(&format!("endpoint:http:{p}")),
        )?;
    }
    host.settle(); // the autoload modprobes have bound every endpoint
    println!("{}", host.devices_text());

    let stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let (router, stop) = (router.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                router.request(paths[i % paths.len()]);
                i += 1;
            }
        })
    };
    let pause = || std::thread::sleep(Duration::from_millis(100));
    pause();
    host.unbind("ep0")?; // waits for /api/users requests in flight
    println!("unbound ep0 (/api/users)");
    let at_unbind = router.served_on("/api/users");
    pause();
    assert_eq!(
        router.served_on("/api/users"),
        at_unbind,
        "served while unbound"
    );
    host.bind("ep0", "api")?;
    println!("bound ep0 again");
    pause();
    host.rmmod("api")?; // the exit unbinds ep1 and ep0 first
    println!("rmmod api: {}", host.devices_text());
    let at_rmmod = (
        router.served_on("/api/users"),
        router.served_on("/api/orders"),
    );
    pause();
    stop.store(true, Ordering::Relaxed);
    generator.join().expect("generator");
    let after = (
        router.served_on("/api/users"),
        router.served_on("/api/orders"),
    );
    println!(
        "requests served: {} ({} on /health); refused while unbound: {}; refused in flight (revoked between lookup and call): {}; /api requests served after rmmod returned: {}",
        router.served.load(Ordering::Relaxed),
        router.served_on("/health"),
        router.refused_unbound.load(Ordering::Relaxed),
        router.refused_revoked.load(Ordering::Relaxed),
        (after.0 - at_rmmod.0) + (after.1 - at_rmmod.1),
    );
    assert_eq!(after, at_rmmod, "no /api request after the module went");
    let stalls = host
        .diagnostics()
        .into_iter()
        .filter(|d| d.kind == modkit::DiagKind::Stalled)
        .count();
    println!(
        "stall reports: {stalls}; invariant violations: {}",
        host.violations().len()
    );
    Ok(())
}
