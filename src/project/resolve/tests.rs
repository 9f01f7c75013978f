//! Unit tests of the resolution rules: each asserts the value a rule gives, or the
//! problem and the text of the project file it marks.

use std::path::PathBuf;

use super::*;
use crate::diagnostic::codes;
use crate::project::entries::entries;
use crate::project::file::parse;
use crate::project::file::{DEFAULT_DEVKIT_VERSION, DEFAULT_KIND, DEFAULT_SCHEMA, DEFAULT_TAG};

fn file(text: &str) -> SourceFile {
    SourceFile::new("eigenruntime.toml", text)
}

/// The entries of a project file whose specs are not read (only `[[avs]]` is used).
fn entries_of(text: &str) -> (SourceFile, Vec<Entry>) {
    let f = file(text);
    let parsed = parse(&f).unwrap();
    let mut problems = Problems::new();
    let entries = entries(&f, &parsed, Path::new("/project"), &mut problems);
    assert!(!problems.has_errors(), "{:?}", problems.sorted());
    (f, entries)
}

fn spec(yaml: &str) -> SpecDocument {
    crate::project::spec::parse(&SourceFile::new("s.yaml", yaml)).unwrap()
}

const SPEC: &str =
    "apiVersion: eigenruntime.io/v1\nkind: Hourglass\nname: a\nversion: 0.3.1\nspec: {}\n";

/// The text a problem's first label marks.
fn marked<'a>(f: &'a SourceFile, p: &Problem) -> &'a str {
    let span = p.labels[0].span.clone();
    &f.text[span]
}

#[test]
fn per_avs_settings_override_defaults() {
    let f = file(
        "[defaults]\nregistry = \"ghcr.io/a\"\nkind = \"K\"\nlayer-title = false\n[[avs]]\nname = \"x\"\nkind = \"L\"\nrepository = \"ghcr.io/b/y\"\n",
    );
    let p = parse(&f).unwrap();
    let s = Settings::for_avs(&p.defaults, p.avs[0].get_ref());
    assert_eq!(s.kind.value, "L");
    assert_eq!(&f.text[s.kind.span.unwrap()], "\"L\"");
    assert!(matches!(s.registry, Some(Destination::Repository(_))));
    assert_eq!(s.registry.unwrap().setting().value, "ghcr.io/b/y");
    assert!(!s.layer_title);
    assert_eq!(s.schema.value, DEFAULT_SCHEMA);
    assert_eq!(s.schema.span, None, "a built-in default is written nowhere");
    assert_eq!(s.devkit_version.value, DEFAULT_DEVKIT_VERSION);
}

#[test]
fn defaults_apply_where_an_entry_says_nothing() {
    let f = file(
        "[defaults]\nregistry = \"ghcr.io/a\"\ntag = \"{avs}-{opset}\"\ncreated = \"git\"\nadopt-equivalent = false\n[[avs]]\nname = \"x\"\n[[discover]]\nspecs = \"f/{avs}/{opset}.yaml\"\ntag = \"d-{opset}\"\nregistry = \"oci:out\"\n",
    );
    let p = parse(&f).unwrap();
    let avs = Settings::for_avs(&p.defaults, p.avs[0].get_ref());
    assert_eq!(avs.tag.value, "{avs}-{opset}");
    assert_eq!(avs.registry.as_ref().unwrap().setting().value, "ghcr.io/a");
    assert!(matches!(avs.registry, Some(Destination::Prefix(_))));
    assert_eq!(avs.created.as_ref().unwrap().value, "git");
    assert_eq!(avs.kind.value, DEFAULT_KIND);
    assert!(avs.layer_title, "layer-title defaults to true");
    assert!(!avs.adopt_equivalent);
    let d = Settings::for_discover(&p.defaults, p.discover[0].get_ref());
    assert_eq!(d.tag.value, "d-{opset}");
    assert_eq!(d.registry.unwrap().setting().value, "oci:out");
    assert_eq!(d.created.unwrap().value, "git");
    assert!(!d.adopt_equivalent);
    let none = parse(&file("[[avs]]\nname = \"x\"\n")).unwrap();
    let s = Settings::for_avs(&none.defaults, none.avs[0].get_ref());
    assert_eq!(s.tag.value, DEFAULT_TAG);
    assert!(s.registry.is_none() && s.created.is_none() && s.source.is_none());
    assert!(s.adopt_equivalent);
}

#[test]
fn tag_templates() {
    assert_eq!(render_tag(DEFAULT_TAG, "a", 1, "3").unwrap(), "opset-1-v3");
    assert_eq!(render_tag("{avs}-{opset}", "a", 0, "3").unwrap(), "a-0");
    assert_eq!(render_tag("latest", "a", 7, "3").unwrap(), "latest");
    assert_eq!(
        render_tag("v{ver}", "a", 0, "3").unwrap_err(),
        "tag template `v{ver}` uses `{ver}`; the placeholders are {avs}, {opset} and {version}"
    );
    assert_eq!(
        render_tag("v{version", "a", 0, "3").unwrap_err(),
        "tag template `v{version` has a `{` with no `}`"
    );
    assert_eq!(
        render_tag("v}", "a", 0, "3").unwrap_err(),
        "tag template `v}` has a `}` with no `{`"
    );
}

#[test]
fn the_tag_of_an_entry_and_what_its_errors_point_at() {
    let (f, e) = entries_of(
        "[[avs]]\nname = \"x\"\nversion = \"1+build\"\n[avs.operator-sets]\n2 = \"x.yaml\"\n[[avs]]\nname = \"y\"\ntag = \"{nope}\"\n[avs.operator-sets]\n0 = \"y.yaml\"\n[[avs]]\nname = \"z\"\ntag = \"-{avs}\"\n[avs.operator-sets]\n0 = \"z.yaml\"\n",
    );
    assert_eq!(tag(&f, &e[0], "1.0").unwrap().as_str(), "opset-2-v1.0");
    // `+` is no tag character: the version that brought it is marked.
    let p = tag(&f, &e[0], "1+build").unwrap_err();
    assert_eq!(p.code, codes::PROJECT_TAG);
    assert!(p.message.starts_with("x operator set 2: "), "{}", p.message);
    assert_eq!(marked(&f, &p), "\"1+build\"");
    // A written template that gives no valid tag is marked itself.
    let p = tag(&f, &e[2], "1").unwrap_err();
    assert_eq!(p.code, codes::PROJECT_TAG);
    assert_eq!(marked(&f, &p), "\"-{avs}\"");
    let p = tag(&f, &e[1], "1").unwrap_err();
    assert_eq!(p.code, codes::PROJECT_TAG_TEMPLATE);
    assert_eq!(marked(&f, &p), "\"{nope}\"");
    let p = check_without_spec(&f, &e[1]);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].code, codes::PROJECT_TAG_TEMPLATE);
    assert!(check_without_spec(&f, &e[0]).is_empty());
}

#[test]
fn the_version_comes_from_the_project_file_else_from_the_spec() {
    let (f, e) = entries_of(
        "[[avs]]\nname = \"x\"\nversion = 3\n[avs.operator-sets]\n0 = \"x.yaml\"\n[[avs]]\nname = \"y\"\n[avs.operator-sets]\n0 = \"y.yaml\"\n[[avs]]\nname = \"z\"\nversion = \" \"\n[avs.operator-sets]\n0 = \"z.yaml\"\n",
    );
    assert_eq!(version(&f, &e[0], &spec(SPEC)).unwrap(), "3");
    assert_eq!(version(&f, &e[1], &spec(SPEC)).unwrap(), "0.3.1");
    let p = version(&f, &e[1], &spec("name: y\n")).unwrap_err();
    assert_eq!(p.code, codes::SPEC_NO_VERSION);
    assert_eq!(marked(&f, &p), "\"y.yaml\"");
    let p = version(&f, &e[2], &spec(SPEC)).unwrap_err();
    assert_eq!(p.code, codes::PROJECT_VERSION);
    assert_eq!(marked(&f, &p), "\" \"");
}

#[test]
fn mutable_tag_globs() {
    let f = file("[defaults]\nmutable-tags = [\"latest\", \"opset-*-dev\"]\n");
    let parsed = parse(&f).unwrap();
    let mut problems = Problems::new();
    let mutable = MutableTags::new(&f, &parsed.defaults.mutable_tags, &mut problems);
    assert!(problems.is_empty());
    assert!(mutable.matches("latest"));
    assert!(mutable.matches("opset-0-dev"));
    assert!(!mutable.matches("opset-0-v1"));
    assert!(!mutable.matches("latest-1"));

    let f = file("[defaults]\nmutable-tags = [\"latest\", \"[a\"]\n");
    let parsed = parse(&f).unwrap();
    let mut problems = Problems::new();
    let mutable = MutableTags::new(&f, &parsed.defaults.mutable_tags, &mut problems);
    let problems = problems.sorted();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].code, codes::PROJECT_GLOB);
    assert_eq!(marked(&f, &problems[0]), "\"[a\"");
    assert!(mutable.matches("latest"), "the valid globs still count");

    let none = MutableTags::new(&f, &[], &mut Problems::new());
    assert!(!none.matches("latest"));
}

#[test]
fn repository_is_the_registry_prefix_and_the_avs_name() {
    let (_, e) = entries_of(
        "[defaults]\nregistry = \"ghcr.io/acme\"\n[[avs]]\nname = \"price-oracle\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n[[avs]]\nname = \"own\"\nrepository = \"registry.example:5000/team/special\"\n[avs.operator-sets]\n0 = \"b.yaml\"\n",
    );
    let dir = Path::new("/project");
    assert_eq!(
        derive_repository(dir, &e[0]).unwrap(),
        Repository::Remote {
            registry: "ghcr.io".into(),
            path: "acme/price-oracle".into()
        }
    );
    assert_eq!(
        derive_repository(dir, &e[1]).unwrap(),
        Repository::Remote {
            registry: "registry.example:5000".into(),
            path: "team/special".into()
        },
        "`repository` is used as written, without the AVS name"
    );
}

#[test]
fn repository_in_a_layout() {
    let (_, e) = entries_of(
        "[defaults]\nregistry = \"oci:out\"\n[[avs]]\nname = \"a\"\n[avs.operator-sets]\n0 = \"a.yaml\"\n[[avs]]\nname = \"b\"\nrepository = \"oci:elsewhere/named\"\n[avs.operator-sets]\n0 = \"b.yaml\"\n[[avs]]\nname = \"c\"\nrepository = \"oci:/abs\"\n[avs.operator-sets]\n0 = \"c.yaml\"\n",
    );
    let dir = Path::new("/project");
    assert_eq!(
        derive_repository(dir, &e[0]).unwrap(),
        Repository::Layout {
            root: PathBuf::from("/project/out"),
            display_root: "out".into(),
            path: "a".into()
        }
    );
    assert_eq!(
        derive_repository(dir, &e[1]).unwrap(),
        Repository::Layout {
            root: PathBuf::from("/project/elsewhere"),
            display_root: "elsewhere".into(),
            path: "named".into()
        }
    );
    assert_eq!(
        derive_repository(dir, &e[2]).unwrap(),
        Repository::Layout {
            root: PathBuf::from("/"),
            display_root: "/".into(),
            path: "abs".into()
        }
    );
}

#[test]
fn repository_errors_point_at_their_cause() {
    let (f, e) = entries_of(
        "[[avs]]\nname = \"none\"\n[avs.operator-sets]\n0 = \"n.yaml\"\n[[avs]]\nname = \"Upper\"\n[avs.operator-sets]\n0 = \"u.yaml\"\n",
    );
    let (m, span) = derive_repository(Path::new("/p"), &e[0]).unwrap_err();
    assert!(m.starts_with("no registry"), "{m}");
    assert_eq!(&f.text[span], "\"n.yaml\"");

    let (f, e) = entries_of(
        "[defaults]\nregistry = \"ghcr.io/acme\"\n[[avs]]\nname = \"Upper\"\n[avs.operator-sets]\n0 = \"u.yaml\"\n[[avs]]\nname = \"ok\"\nrepository = \"ghcr.io/Bad\"\n[avs.operator-sets]\n0 = \"b.yaml\"\n",
    );
    let p = repository(&f, Path::new("/p"), &e[0]).unwrap_err();
    assert_eq!(p.code, codes::PROJECT_REPOSITORY);
    assert_eq!(marked(&f, &p), "\"Upper\"", "the AVS name is to blame");
    let p = repository(&f, Path::new("/p"), &e[1]).unwrap_err();
    assert_eq!(
        marked(&f, &p),
        "\"ghcr.io/Bad\"",
        "the repository as written"
    );
}
