//! Pure helpers and report types for the diagnostic modes of `vouch-hostile`
//! (`net`, `rootwrite`, `probe`). The binary does the actual file-system and
//! socket calls; parsing and the isolation verdict live here so they can be
//! unit tested.

use serde::Serialize;

/// Output of `vouch-hostile net`. Field order is the output order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetReport {
    pub interfaces: Vec<String>,
    pub routes: u64,
    /// `"ok"` if the UDP connect succeeded, otherwise the error text.
    pub udp_connect: String,
}

impl NetReport {
    /// Isolated = no interface other than `lo`, no routes, and a UDP
    /// connect to a public-looking address failed.
    pub fn is_isolated(&self) -> bool {
        self.interfaces.iter().all(|i| i == "lo") && self.routes == 0 && self.udp_connect != "ok"
    }
}

/// Output of `vouch-hostile rootwrite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootwriteReport {
    pub root_write: String,
    pub tmp_write: String,
}

/// Output of `vouch-hostile probe`. Field order is the output order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub cap_eff: Option<String>,
    pub no_new_privs: Option<u64>,
    pub interfaces: Vec<String>,
    pub root_writable: bool,
    pub tmp_writable: bool,
    pub docker_sock: bool,
    pub pids_max: Option<String>,
    pub memory_max: Option<String>,
}

/// The fields of `/proc/self/status` that `probe` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusInfo {
    /// Real uid (first field of `Uid:`).
    pub uid: Option<u64>,
    /// Real gid (first field of `Gid:`).
    pub gid: Option<u64>,
    /// `CapEff:` as printed by the kernel (16 hex digits).
    pub cap_eff: Option<String>,
    /// `NoNewPrivs:` (0 or 1).
    pub no_new_privs: Option<u64>,
}

/// Parse the text of `/proc/self/status`.
pub fn parse_status(text: &str) -> StatusInfo {
    let mut info = StatusInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let first = value.split_whitespace().next();
        match key {
            "Uid" => info.uid = first.and_then(|v| v.parse().ok()),
            "Gid" => info.gid = first.and_then(|v| v.parse().ok()),
            "CapEff" => info.cap_eff = first.map(str::to_string),
            "NoNewPrivs" => info.no_new_privs = first.and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    info
}

/// Number of routes in the text of `/proc/net/route`: non-blank lines after
/// the header line.
pub fn count_routes(text: &str) -> u64 {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count() as u64
}

/// Trimmed contents of a cgroup limit file, `None` if empty.
pub fn trim_limit(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Serialize a report as one compact JSON line (with trailing `\n`).
pub fn json_line<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string(value)
        .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tvouch-hostile\n\
Umask:\t0022\n\
State:\tR (running)\n\
Uid:\t65534\t65534\t65534\t65534\n\
Gid:\t65533\t65534\t65534\t65534\n\
Groups:\t\n\
CapInh:\t0000000000000000\n\
CapPrm:\t0000000000000000\n\
CapEff:\t0000000000000000\n\
CapBnd:\t0000000000000000\n\
NoNewPrivs:\t1\n\
Seccomp:\t2\n";

    #[test]
    fn parses_proc_status() {
        let s = parse_status(STATUS);
        assert_eq!(s.uid, Some(65534));
        assert_eq!(s.gid, Some(65533));
        assert_eq!(s.cap_eff.as_deref(), Some("0000000000000000"));
        assert_eq!(s.no_new_privs, Some(1));
    }

    #[test]
    fn parses_root_status_and_missing_fields() {
        let s = parse_status("Uid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n");
        assert_eq!(s.uid, Some(0));
        assert_eq!(s.gid, None);
        assert_eq!(s.cap_eff.as_deref(), Some("000001ffffffffff"));
        assert_eq!(s.no_new_privs, None);
        assert_eq!(parse_status(""), StatusInfo::default());
    }

    #[test]
    fn counts_routes() {
        let header =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";
        assert_eq!(count_routes(""), 0);
        assert_eq!(count_routes(header), 0);
        let two = format!(
            "{header}eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\n"
        );
        assert_eq!(count_routes(&two), 2);
    }

    #[test]
    fn isolation_verdict() {
        let mut r = NetReport {
            interfaces: vec!["lo".into()],
            routes: 0,
            udp_connect: "Network is unreachable (os error 101)".into(),
        };
        assert!(r.is_isolated());
        r.interfaces.clear();
        assert!(r.is_isolated());
        r.interfaces = vec!["eth0".into(), "lo".into()];
        assert!(!r.is_isolated());
        r.interfaces = vec!["lo".into()];
        r.routes = 1;
        assert!(!r.is_isolated());
        r.routes = 0;
        r.udp_connect = "ok".into();
        assert!(!r.is_isolated());
    }

    #[test]
    fn net_report_json_shape() {
        let r = NetReport {
            interfaces: vec!["lo".into()],
            routes: 0,
            udp_connect: "ok".into(),
        };
        assert_eq!(
            json_line(&r),
            "{\"interfaces\":[\"lo\"],\"routes\":0,\"udp_connect\":\"ok\"}\n"
        );
    }

    #[test]
    fn probe_json_uses_null_for_unknown() {
        let p = Probe {
            uid: Some(65534),
            gid: Some(65534),
            cap_eff: Some("0000000000000000".into()),
            no_new_privs: Some(1),
            interfaces: vec!["lo".into()],
            root_writable: false,
            tmp_writable: true,
            docker_sock: false,
            pids_max: Some("64".into()),
            memory_max: None,
        };
        assert_eq!(
            json_line(&p),
            "{\"uid\":65534,\"gid\":65534,\"cap_eff\":\"0000000000000000\",\"no_new_privs\":1,\
             \"interfaces\":[\"lo\"],\"root_writable\":false,\"tmp_writable\":true,\
             \"docker_sock\":false,\"pids_max\":\"64\",\"memory_max\":null}\n"
        );
    }

    #[test]
    fn trims_limits() {
        assert_eq!(trim_limit("max\n").as_deref(), Some("max"));
        assert_eq!(trim_limit(" 67108864\n").as_deref(), Some("67108864"));
        assert_eq!(trim_limit("\n"), None);
    }
}
