//! `limits`, `user`/`group` and `cgroup`: parsed, inherited from `defaults`, and every hostile
//! value refused with the line of the key.

use super::{expect_error, expect_errors, fixture, show};
use crate::config::*;

#[test]
fn limits_are_parsed_and_inherited_key_by_key_from_defaults() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        cgroup: /mcpd
        defaults:
          limits: {memory: 1GiB, cpu: 2, tasks: 256, open_files: 4096}
        ",
    );
    f.write(
        "mcp/a.yaml",
        "
        mcp_servers:
          own:
            binary: x
            limits:
              memory: 512MiB
              cpu: 0.5
          inherits:
            binary: x
        ",
    );
    let servers = f.servers();
    assert_eq!(
        servers["own"].limits,
        Limits {
            memory: Some(512 << 20),
            cpu: Some(0.5),
            tasks: Some(256),
            open_files: Some(4096),
        }
    );
    assert_eq!(servers["inherits"].limits.memory, Some(1 << 30));
    assert_eq!(servers["inherits"].limits.cpu, Some(2.0));
    assert_eq!(f.daemon().cgroup, CgroupSetting::Path("/mcpd".into()));
}

#[test]
fn no_limits_and_auto_cgroup_by_default() {
    let f = fixture();
    f.write("mcp/a.yaml", "mcp_servers:\n  a:\n    binary: x\n");
    assert_eq!(f.servers()["a"].limits, Limits::default());
    assert_eq!(f.servers()["a"].run_as, None);
    assert_eq!(f.daemon().cgroup, CgroupSetting::Auto);
}

#[test]
fn hostile_limits_are_refused_at_their_line() {
    let f = fixture();
    f.write(
        "mcp/a.yaml",
        "
        mcp_servers:
          a:
            binary: x
            limits:
              memory: 0
              cpu: 0
              tasks: 0
              open_files: 0
          b:
            binary: x
            limits:
              memory: -5
              cpu: -1
              tasks: -1
              open_files: -3
          c:
            binary: x
            limits:
              memory: 99999999999999999999TiB
              cpu: .nan
              tasks: 99999999999
              open_files: 99999999999
          d:
            binary: x
            limits:
              memory: lots
              cpu: half
              tasks: many
              open_files: [1]
              swap: 1G
          e:
            binary: x
            limits:
              memory: 2048TiB
              cpu: .inf
          f:
            binary: x
            limits: 12
        ",
    );
    let errors = f.errors();
    expect_errors(
        &errors,
        "a.yaml",
        &[
            (5, "limits.memory 0B is outside 1MiB-1PiB"),
            (6, "limits.cpu 0 is outside"),
            (7, "limits.tasks 0 is outside"),
            (8, "limits.open_files 0 is outside"),
            (12, "invalid size -5: must not be negative"),
            (13, "limits.cpu -1 is outside"),
            (19, "number too large"),
            (20, "limits.cpu NaN is outside"),
            (21, "limits.tasks 99999999999 is outside"),
            (22, "limits.open_files 99999999999 is outside"),
            (26, "invalid size \"lots\""),
            (30, "unknown key \"swap\""),
            (34, "limits.memory 2048TiB is outside 1MiB-1PiB"),
            (35, "limits.cpu inf is outside"),
        ],
    );
    for line in [14, 15, 27, 28, 29, 38] {
        assert!(
            errors.iter().any(|e| e.line == Some(line)),
            "no error on line {line}:\n{}",
            super::show(&errors)
        );
    }
}

#[test]
fn defaults_limits_are_validated_in_the_daemon_file() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        defaults:
          limits:
            tasks: 0
        ",
    );
    let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
    expect_error(&errors, "mcpd.yaml", 4, "limits.tasks 0 is outside");
}

#[test]
fn hostile_cgroup_paths_are_refused() {
    for bad in [
        "\"../escape\"",
        "\"/a/../b\"",
        "\"/\"",
        "\"\"",
        "\"a b\"",
        "\"./x\"",
    ] {
        let f = fixture();
        f.write("mcpd.yaml", &format!("services_dir: mcp\ncgroup: {bad}\n"));
        let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
        expect_error(&errors, "mcpd.yaml", 2, "invalid cgroup");
    }
    for (good, setting) in [
        ("off", CgroupSetting::Off),
        ("auto", CgroupSetting::Auto),
        ("mcpd/servers/", CgroupSetting::Path("mcpd/servers".into())),
    ] {
        let f = fixture();
        f.write("mcpd.yaml", &format!("services_dir: mcp\ncgroup: {good}\n"));
        assert_eq!(f.daemon().cgroup, setting, "{good}");
    }
}

#[test]
fn user_and_group_resolve_or_are_refused() {
    if !may_switch_users() {
        eprintln!("skipped: this test process may not switch users (no CAP_SETUID/CAP_SETGID)");
        return;
    }
    let f = fixture();
    f.write(
        "mcp/a.yaml",
        "
        mcp_servers:
          named:
            binary: x
            user: nobody
          numeric:
            binary: x
            user: \"65534\"
            group: \"0\"
        ",
    );
    let servers = f.servers();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(
        servers["named"].run_as,
        Some(RunAs {
            user: "nobody".into(),
            uid: nobody.uid.as_raw(),
            gid: nobody.gid.as_raw(),
            name: "nobody".into(),
            home: nobody.dir.clone(),
        })
    );
    assert_eq!(
        servers["numeric"].run_as.as_ref().map(|r| (r.uid, r.gid)),
        Some((65534, 0))
    );
    f.write(
        "mcp/a.yaml",
        "
        mcp_servers:
          a:
            binary: x
            user: no-such-user-mcpd
          b:
            binary: x
            user: nobody
            group: no-such-group-mcpd
          c:
            binary: x
            group: nogroup
        ",
    );
    expect_errors(
        &f.errors(),
        "a.yaml",
        &[
            (
                4,
                "user \"no-such-user-mcpd\" of server \"a\" does not exist",
            ),
            (
                8,
                "group \"no-such-group-mcpd\" of server \"b\" does not exist",
            ),
            (11, "group without user"),
        ],
    );
}

#[test]
fn a_user_change_needs_a_restart_and_a_limit_change_does_not() {
    let daemon = test_builder::daemon_config(std::path::Path::new("/etc/mcpd"));
    let old = test_builder::server_config(&daemon, "a");
    let mut limits = old.clone();
    limits.limits.memory = Some(1 << 30);
    limits.limits.open_files = Some(100);
    assert!(!old.needs_restart_for(&limits));
    let mut user = old.clone();
    user.run_as = Some(RunAs {
        user: "nobody".into(),
        uid: 65534,
        gid: 65534,
        name: "nobody".into(),
        home: "/nonexistent".into(),
    });
    assert!(old.needs_restart_for(&user));
}

#[test]
fn sizes_print_the_way_they_are_written() {
    assert_eq!(format_bytes(512 << 20), "512MiB");
    assert_eq!(format_bytes(1 << 30), "1GiB");
    assert_eq!(format_bytes(1536 << 10), "1536KiB");
    assert_eq!(format_bytes(100), "100B");
    assert_eq!(format_bytes((1 << 20) + 1), "1.0MiB");
}

#[test]
fn a_sandbox_is_read_and_bad_paths_point_at_their_line() {
    let f = fixture();
    f.write(
        "mcp/boxed.yaml",
        "
        mcp_servers:
          boxed:
            binary: mcp-echo
            sandbox: {private_tmp: true, read_only_paths: [/usr, relative/dir, /no/such/path]}
        ",
    );
    if !nix::unistd::geteuid().is_root() {
        // Without CAP_SYS_ADMIN the whole key is refused, at its line.
        let errors = f.errors();
        assert!(
            show(&errors).contains("may not make mount namespaces"),
            "{}",
            show(&errors)
        );
        return;
    }
    let errors = f.errors();
    assert_eq!(errors.len(), 2, "{}", show(&errors));
    assert!(
        errors.iter().all(|e| e.line == Some(4)),
        "{}",
        show(&errors)
    );
    assert!(show(&errors).contains("\"relative/dir\" of server \"boxed\" is not an absolute path"));
    assert!(show(&errors).contains("\"/no/such/path\" of server \"boxed\" does not exist"));
    f.write(
        "mcp/boxed.yaml",
        "
        mcp_servers:
          boxed:
            binary: mcp-echo
            sandbox: {private_tmp: true, read_only_paths: [/usr]}
        ",
    );
    let boxed = &f.servers()["boxed"];
    assert!(boxed.sandbox.private_tmp);
    assert_eq!(
        boxed.sandbox.read_only_paths,
        [std::path::PathBuf::from("/usr")]
    );
}
