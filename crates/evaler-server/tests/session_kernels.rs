//! The shipped `kernels.toml` against the machine, and the validation of
//! kernels files. A missing interpreter is a failure (install it with
//! .ci/install.sh), not a skip: that session language would be broken.

use evaler_server::session::kernels::{Dialect, KernelKind, KernelTable, BUNDLED_KERNELS};

#[test]
fn every_shipped_kernel_is_complete_and_installed() {
    let table = KernelTable::bundled().expect("kernels.toml parses");
    let names: Vec<&str> = table.names().collect();
    assert_eq!(names, ["bash", "cpp", "python", "ruby", "zsh"]);
    for k in table.iter() {
        let argv = k
            .resolved_command()
            .unwrap_or_else(|e| panic!("kernel {}: {e} (see .ci/install.sh)", k.name));
        let program = std::path::Path::new(&argv[0]);
        assert!(
            program.is_file(),
            "kernel {}: {} is not installed (see .ci/install.sh)",
            k.name,
            program.display()
        );
        assert!(
            program.starts_with("/usr"),
            "kernel {}: the box only shows /usr",
            k.name
        );
        assert!(k.memory_kib >= 64 * 1024 && k.processes >= 8, "{}", k.name);
    }
    assert!(matches!(
        table.get("py").unwrap().kind,
        KernelKind::Native { .. }
    ));
    assert_eq!(
        table.get("c++").unwrap().kind,
        KernelKind::Stdio {
            dialect: Dialect::Cpp
        }
    );
    assert_eq!(table.get("cpp").unwrap().memory_kib, 1024 * 1024);
    assert_eq!(table.get("python").unwrap().memory_kib, 512 * 1024);
}

#[test]
fn clang_repl_resolves_to_the_newest_installed() {
    let table = KernelTable::bundled().unwrap();
    let argv = table.get("cpp").unwrap().resolved_command().unwrap();
    assert!(argv[0].ends_with("/bin/clang-repl"), "{argv:?}");
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let v = n.strip_prefix("llvm-")?.parse().ok()?;
            e.path().join("bin/clang-repl").is_file().then_some(v)
        })
        .collect();
    versions.sort();
    let newest = versions
        .last()
        .expect("no clang-repl installed (clang-tools-16)");
    assert!(argv[0].contains(&format!("llvm-{newest}/")), "{argv:?}");
}

#[test]
fn invalid_files_are_rejected_with_a_reason() {
    let bad = [
        ("", "no kernels"),
        ("[kernels.x]\nkind = \"native\"\nserver = \"python\"\ncommand = [\"python3\", \"{server}\"]", "absolute path"),
        ("[kernels.x]\nkind = \"native\"\nserver = \"cobol\"\ncommand = [\"/usr/bin/x\", \"{server}\"]", "no embedded server"),
        ("[kernels.x]\nkind = \"native\"\nserver = \"python\"\ncommand = [\"/usr/bin/python3\"]", "{server}"),
        ("[kernels.x]\nkind = \"stdio\"\ndialect = \"fish\"\ncommand = [\"/usr/bin/fish\"]", "unknown dialect"),
        ("[kernels.x]\nkind = \"other\"\ncommand = [\"/usr/bin/x\"]", "unknown kind"),
        ("[kernels.X]\nkind = \"stdio\"\ndialect = \"bash\"\ncommand = [\"/usr/bin/bash\"]", "invalid kernel name"),
        ("[kernels.x]\nkind = \"stdio\"\ndialect = \"bash\"\ncommand = [\"/usr/bin/bash\"]\ncolour = 1", "unknown field"),
        ("[kernels.x]\nkind = \"stdio\"\ndialect = \"bash\"\ncommand = [\"/usr/bin/bash\"]\naliases = [\"y\"]\n[kernels.y]\nkind = \"stdio\"\ndialect = \"zsh\"\ncommand = [\"/usr/bin/zsh\"]", "used twice"),
        ("[kernels.x]\nkind = \"stdio\"\ndialect = \"bash\"\ncommand = [\"/usr/bin/bash\"]\nmemory_kib = 0", "positive"),
    ];
    for (text, want) in bad {
        let err = KernelTable::parse(text).expect_err(text).to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
    // The bundled text is what bundled() parses.
    assert!(BUNDLED_KERNELS.contains("[kernels.python]"));
}
