//! README's command table names exactly the commands of the command table: a command added
//! to the table without a line in README (or the reverse) fails here.

use std::collections::BTreeSet;

use corral::front::table::TABLE;

/// The commands README's "Commands" table names: the first word of each comma-separated
/// item of its first column (`DEL/UNLINK` names both; `CONFIG GET` names CONFIG).
fn readme_commands(readme: &str) -> BTreeSet<String> {
    let section = readme
        .split("\n## Commands\n")
        .nth(1)
        .expect("README has a Commands section");
    let mut names = BTreeSet::new();
    for row in section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
    {
        let first = row
            .split(" | ")
            .next()
            .unwrap_or("")
            .trim_start_matches("| ");
        for item in first.split(", ") {
            let word = item.split(' ').next().unwrap_or("");
            for name in word.split('/') {
                names.insert(name.to_ascii_lowercase());
            }
        }
    }
    names
}

#[test]
fn readme_lists_every_command_of_the_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let documented = readme_commands(&readme);
    let table: BTreeSet<String> = TABLE.specs().iter().map(|s| s.name.to_string()).collect();
    assert!(table.len() > 10, "the table has {} commands", table.len());
    let undocumented: Vec<_> = table.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&table).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "README's Commands table is out of step with the command table: \
         missing {undocumented:?}, not commands {unknown:?}"
    );
}

#[test]
fn the_readme_scan_reads_items_and_alternatives() {
    let text = "x\n## Commands\n\n| command | what |\n|---|---|\n| PING [msg], ECHO msg | a |\n\
                | DEL/UNLINK, CONFIG GET | b |\n\nafter\n| NOT | c |\n";
    let names: Vec<String> = readme_commands(text).into_iter().collect();
    assert_eq!(names, ["config", "del", "echo", "ping", "unlink"]);
}
