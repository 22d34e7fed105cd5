//! Finding processes by name through `/proc` (a shared PID namespace in a
//! pod makes the main container's processes visible to berth).
//!
//! A process matches NAME when its `/proc/<pid>/comm` equals NAME (the kernel
//! truncates comm to 15 bytes, so a longer NAME is compared on its first 15
//! bytes) or the basename of its argv[0] equals NAME. berth itself never
//! matches, and zombies never match: a process that exited but was not yet
//! reaped is gone for every purpose berth cares about.

use std::fs;

/// The kernel's comm length limit (TASK_COMM_LEN - 1).
const COMM_LEN: usize = 15;

/// PIDs of live processes named `name`, berth excluded, ascending.
pub fn find_by_name(name: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && matches(pid, name) && is_alive(pid))
        .collect();
    pids.sort_unstable();
    pids
}

fn matches(pid: i32, name: &str) -> bool {
    if let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm")) {
        let comm = comm.trim_end_matches('\n');
        let wanted = if name.len() > COMM_LEN && name.is_char_boundary(COMM_LEN) {
            &name[..COMM_LEN]
        } else {
            name
        };
        // A truncated comm match alone could confuse two long names; confirm
        // with argv[0] in that case.
        if comm == name || (name.len() > COMM_LEN && comm == wanted && argv0_is(pid, name)) {
            return true;
        }
    }
    argv0_is(pid, name)
}

fn argv0_is(pid: i32, name: &str) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
    !base.is_empty() && base == name.as_bytes()
}

/// The process exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the last ')' (comm may contain ')').
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => false,
        },
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_by_name_and_not_after_it_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        assert!(find_by_name("sleep").contains(&pid));
        assert!(is_alive(pid));
        child.kill().expect("kill");
        // Not reaped yet: a zombie must not count as running.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while find_by_name("sleep").contains(&pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "killed sleep still found"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            fs::metadata(format!("/proc/{pid}")).is_ok(),
            "still a zombie (not reaped), yet not found"
        );
        child.wait().expect("wait");
        assert!(!is_alive(pid));
    }

    #[test]
    fn never_finds_itself() {
        let me = std::process::id() as i32;
        let comm = fs::read_to_string("/proc/self/comm").expect("comm");
        assert!(!find_by_name(comm.trim()).contains(&me));
    }
}
