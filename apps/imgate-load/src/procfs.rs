//! What Linux's `/proc` says about a process (resident memory, descriptors, threads) and
//! about the machine (cores, memory), for reports that must say where they were measured.

use std::io;

/// One look at a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Open file descriptors (entries of `/proc/<pid>/fd`).
    pub fds: u64,
    /// Threads (`Threads`).
    pub threads: u64,
}

/// Samples process `pid`.
pub async fn sample(pid: u32) -> io::Result<ProcessSample> {
    let status = tokio::fs::read_to_string(format!("/proc/{pid}/status")).await?;
    let mut fds = 0;
    let mut entries = tokio::fs::read_dir(format!("/proc/{pid}/fd")).await?;
    while entries.next_entry().await?.is_some() {
        fds += 1;
    }
    Ok(ProcessSample {
        rss_kib: status_field(&status, "VmRSS").unwrap_or(0),
        fds,
        threads: status_field(&status, "Threads").unwrap_or(0),
    })
}

/// CPU time process `pid` has used so far, user and system together.
pub async fn cpu_time(pid: u32) -> io::Result<std::time::Duration> {
    let stat = tokio::fs::read_to_string(format!("/proc/{pid}/stat")).await?;
    let ticks = cpu_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc stat"))?;
    // USER_HZ, in which /proc counts, is 100 on every Linux architecture's ABI.
    Ok(std::time::Duration::from_millis(ticks * 10))
}

/// `utime + stime` of a `/proc/<pid>/stat` line; the command name may hold spaces and
/// parentheses, so fields are counted from its closing one.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The 1-minute load average.
pub async fn load_average() -> Option<f64> {
    let text = tokio::fs::read_to_string("/proc/loadavg").await.ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The first number of line `name:` in a `/proc/<pid>/status` (or `/proc/meminfo`) text.
pub fn status_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The machine a measurement ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// The CPU's model name, when `/proc/cpuinfo` gives one.
    pub cpu: Option<String>,
    /// Physical memory, KiB.
    pub memory_kib: Option<u64>,
}

impl Machine {
    /// Looks at this machine.
    pub async fn this() -> Self {
        let cpu = tokio::fs::read_to_string("/proc/cpuinfo")
            .await
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("model name"))
                    .and_then(|rest| rest.split_once(':'))
                    .map(|(_, name)| name.trim().to_owned())
            });
        let memory_kib = tokio::fs::read_to_string("/proc/meminfo")
            .await
            .ok()
            .and_then(|text| status_field(&text, "MemTotal"));
        Self {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu,
            memory_kib,
        }
    }

    /// "2 cores (AMD EPYC …), 23.5 GiB RAM".
    pub fn describe(&self) -> String {
        let mut text = format!("{} cores", self.cores);
        if let Some(cpu) = &self.cpu {
            text.push_str(&format!(" ({cpu})"));
        }
        if let Some(kib) = self.memory_kib {
            text.push_str(&format!(", {:.1} GiB RAM", kib as f64 / 1024.0 / 1024.0));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_by_name() {
        let status = "Name:\timgate\nVmPeak:\t  90000 kB\nVmRSS:\t   41234 kB\nThreads:\t7\n";
        assert_eq!(status_field(status, "VmRSS"), Some(41_234));
        assert_eq!(status_field(status, "Threads"), Some(7));
        assert_eq!(status_field(status, "VmSwap"), None);
        // A prefix of another field's name is not that field.
        assert_eq!(status_field(status, "Vm"), None);
    }

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194304 100 0 0 0 250 70 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(stat), Some(320));
        assert_eq!(cpu_ticks("42 (x) S 1"), None);
    }

    #[tokio::test]
    async fn this_process_can_be_sampled() {
        let sample = sample(std::process::id()).await.unwrap();
        assert!(sample.rss_kib > 0 && sample.fds > 0 && sample.threads > 0);
    }
}
