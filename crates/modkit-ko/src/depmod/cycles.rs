//! Topological sort of the module array and depmod's cycle report.

use std::collections::{HashSet, VecDeque};

use super::{Log, Mod};

/// `depmod_calculate_dependencies`: assigns `dep_sort_idx` with kmod's LIFO Kahn
/// algorithm. On a cycle, prints depmod's report and returns `false`.
pub(crate) fn topo_sort(mods: &mut [Mod], log: &mut Log) -> bool {
    let n = mods.len();
    let mut users: Vec<u32> = mods.iter().map(|m| m.users).collect();
    let mut roots: Vec<usize> = (0..n).filter(|&i| users[i] == 0).collect();
    let mut n_sorted = 0u32;
    while let Some(src) = roots.pop() {
        mods[src].dep_sort_idx = n_sorted;
        n_sorted += 1;
        for k in 0..mods[src].deps.len() {
            let d = mods[src].deps[k];
            users[d] -= 1;
            if users[d] == 0 {
                roots.push(d);
            }
        }
    }
    if (n_sorted as usize) < n {
        report_cycles(mods, &users, log);
        return false;
    }
    true
}

struct Vertex {
    parent: Option<usize>,
    m: usize,
}

/// `depmod_report_cycles`, including its traversal order and messages.
fn report_cycles(mods: &[Mod], users: &[u32], log: &mut Log) {
    let mut roots: VecDeque<usize> = (0..mods.len()).filter(|&i| users[i] > 0).collect();
    let mut visited = vec![false; mods.len()];
    let mut loop_set: HashSet<usize> = HashSet::new();
    // kmod can loop forever on some graphs (a second cycle reachable from the first);
    // bound the work instead.
    let mut budget: u64 = 10_000_000;
    while let Some(root) = roots.pop_front() {
        let mut verts = vec![Vertex {
            parent: None,
            m: root,
        }];
        let mut stack = vec![0usize];
        while let Some(vi) = stack.pop() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                break;
            }
            let m = verts[vi].m;
            if visited[m] && m == root {
                // Report: the chain of parents, root first.
                let mut chain = Vec::new();
                let mut p = verts[vi].parent;
                while let Some(pi) = p {
                    chain.push(verts[pi].m);
                    p = verts[pi].parent;
                }
                let mut text = b"Cycle detected: ".to_vec();
                for &c in chain.iter().rev() {
                    loop_set.insert(c);
                    remove_data(&mut roots, c);
                    text.extend_from_slice(&mods[c].modname);
                    text.extend_from_slice(b" -> ");
                }
                text.extend_from_slice(&mods[m].modname);
                text.push(b'\n');
                log.msg_bytes("ERROR", &text);
                continue;
            }
            visited[m] = true;
            if mods[m].deps.is_empty() {
                remove_data(&mut roots, m);
                continue;
            }
            for &d in &mods[m].deps {
                verts.push(Vertex {
                    parent: Some(vi),
                    m: d,
                });
                stack.push(verts.len() - 1);
            }
        }
    }
    log.msg(
        "ERROR",
        &format!("Found {} modules in dependency cycles!\n", loop_set.len()),
    );
}

/// `kmod_list_remove_data` on kmod's circular list: removes `x` and makes the element that
/// followed it the new head (a quirk that decides the order of cycle reports).
fn remove_data(roots: &mut VecDeque<usize>, x: usize) {
    if let Some(p) = roots.iter().position(|&r| r == x) {
        roots.remove(p);
        if !roots.is_empty() {
            let p = p % roots.len();
            roots.rotate_left(p);
        }
    }
}
