//! Host driver benchmarks: loading 1,000 native modules with dependencies, modprobe of a
//! live module (uncontended and from 64 threads), symbol lookup, and 1,000 threads
//! requesting one slow module under modkit (merged) versus linux-6.1 (one modprobe per
//! request, 50 slots) in the same run; the device model's unbind/bind and a coldplug of
//! 1,000 devices.
//!
//! `cargo bench -p modkit --bench host`

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use modkit::{Host, Init, Module};

/// 1,000 modules; module i exports `s{i}` and imports up to three symbols of earlier
/// modules (a deterministic pseudo-random DAG).
fn dag_host(n: usize) -> Host {
    let h = Host::new("modkit".parse().unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..n {
        let mut m = Module::new(&format!("m{i}")).export(&format!("s{i}"), i as u32);
        let mut deps = Vec::new();
        for _ in 0..3.min(i) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = (x % i as u64) as usize;
            if !deps.contains(&d) {
                deps.push(d);
                m = m.import::<u32>(&format!("s{d}"));
            }
        }
        h.add_module(m.init_step("init", |_| Ok(Init::Continue)))
            .unwrap();
    }
    h
}

fn bench_load(c: &mut Criterion) {
    let mut g = c.benchmark_group("host");
    g.sample_size(10);
    g.bench_function("modprobe 1000 native modules with dependencies", |b| {
        b.iter_batched(
            || dag_host(1000),
            |h| {
                for i in 0..1000 {
                    h.modprobe(&format!("m{i}")).unwrap();
                }
                h
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let h = dag_host(1000);
    for i in 0..1000 {
        h.modprobe(&format!("m{i}")).unwrap();
    }
    let mut g = c.benchmark_group("host live module");
    g.bench_function("modprobe of a live module, uncontended", |b| {
        b.iter(|| h.modprobe(black_box("m999")).unwrap())
    });
    g.bench_function("symbol lookup (get + put)", |b| {
        b.iter(|| {
            let s = h.symbol::<u32>(black_box("s500")).unwrap();
            black_box(*s)
        })
    });
    g.sample_size(10);
    g.bench_function("modprobe of a live module, 64 threads x 100", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let barrier = Arc::new(Barrier::new(64));
                let ts: Vec<_> = (0..64)
                    .map(|_| {
                        let (h, barrier) = (h.clone(), barrier.clone());
                        std::thread::spawn(move || {
                            barrier.wait();
                            let t = Instant::now();
                            for _ in 0..100 {
                                h.modprobe("m999").unwrap();
                            }
                            t.elapsed()
                        })
                    })
                    .collect();
                total += ts
                    .into_iter()
                    .map(|t| t.join().unwrap())
                    .max()
                    .unwrap_or_default();
            }
            total
        })
    });
    g.finish();
}

/// 1,000 threads request one module whose init takes 20 ms.
fn storm(policy: &str) -> Duration {
    let h = Host::new(policy.parse().unwrap());
    h.add_module(Module::new("slow").init_step("probe", |_| {
        std::thread::sleep(Duration::from_millis(20));
        Ok(Init::Continue)
    }))
    .unwrap();
    let barrier = Arc::new(Barrier::new(1001));
    let ts: Vec<_> = (0..1000)
        .map(|_| {
            let (h, barrier) = (h.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                h.request_module("slow").unwrap();
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for t in ts {
        t.join().unwrap();
    }
    t.elapsed()
}

fn bench_storm(c: &mut Criterion) {
    let mut g = c.benchmark_group("1000 threads request one slow module");
    g.sample_size(10);
    for policy in ["modkit", "linux-6.1"] {
        g.bench_function(policy, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| storm(policy)).sum())
        });
    }
    g.finish();
}

/// The device model: an unbind and bind of a device whose probe takes a managed value, and
/// the coldplug of 1,000 devices by one driver module (its init probes them all).
fn bench_devices(c: &mut Criterion) {
    use modkit::{Device, DeviceDriver};
    let driver = || {
        DeviceDriver::new("ep", "endpoint")
            .matches("endpoint:*")
            .probe(|ctx| ctx.devm(0u64).map(drop).map_err(Into::into))
    };
    let mut g = c.benchmark_group("host devices");
    g.sample_size(10);
    let h = Host::new("modkit".parse().unwrap());
    h.add_bus("endpoint").unwrap();
    h.add_module(Module::new("ep").driver(driver())).unwrap();
    h.modprobe("ep").unwrap();
    h.add_device(Device::new("d", "endpoint").modalias("endpoint:d"))
        .unwrap();
    g.bench_function("unbind and bind one device (probe with devm)", |b| {
        b.iter(|| {
            h.unbind("d").unwrap();
            h.bind("d", "ep").unwrap();
        })
    });
    g.bench_function(
        "modprobe a driver module binding 1000 devices, then rmmod",
        |b| {
            b.iter_batched(
                || {
                    let h = Host::new("modkit".parse().unwrap());
                    h.add_bus("endpoint").unwrap();
                    h.add_module(Module::new("ep").driver(driver())).unwrap();
                    for i in 0..1000 {
                        h.add_device(
                            Device::new(&format!("d{i}"), "endpoint").modalias("endpoint:x"),
                        )
                        .unwrap();
                    }
                    h
                },
                |h| {
                    h.modprobe("ep").unwrap();
                    h.rmmod("ep").unwrap();
                    h
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();
}

criterion_group!(benches, bench_load, bench_storm, bench_devices);
criterion_main!(benches);
