//! A private certificate authority, for tests of TLS to a registry it signed.
//!
//! It exists so that eigenpub's TLS is tested the way companies run registries:
//! a CA of their own (made here with `openssl`, EC P-256, two days), a server
//! certificate for the registry's IP address, and the CA handed to eigenpub as a
//! project's `ca-file` and to skopeo as `--cert-dir`.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::process::{run, run_bytes};
use super::secrets::Secret;

/// A CA and a server certificate for `ip`, made with openssl.
pub struct Pki {
    dir: TempDir,
}

impl Pki {
    pub fn new(ip: IpAddr) -> Pki {
        Pki::for_names(ip, &[])
    }

    /// A server certificate for `ip` and the DNS `names` too (for a registry reached
    /// by a name that an `/etc/hosts` of the test's own maps to `ip`).
    pub fn for_names(ip: IpAddr, names: &[&str]) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("eigenpub-it-pki-")
            .tempdir()
            .expect("create pki dir");
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let mut cmd = Command::new("openssl");
            cmd.args(args).current_dir(d);
            let out = run(cmd);
            assert_eq!(out.code, 0, "openssl {args:?} failed: {out}");
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            &[
                &["req", "-x509", "-nodes", "-days", "2"][..],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-subj",
                    "/CN=eigenpub test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ][..],
            ]
            .concat(),
        );
        let cn = format!("/CN={ip}");
        openssl(
            &[
                &["req", "-new", "-nodes"][..],
                &ec[..],
                &["-keyout", "server.key", "-out", "server.csr", "-subj", &cn][..],
            ]
            .concat(),
        );
        fs::write(
            d.join("server.ext"),
            format!(
                "subjectAltName=IP:{ip}{dns}\n\
                 basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\n",
                dns = names
                    .iter()
                    .map(|n| format!(",DNS:{n}"))
                    .collect::<String>()
            ),
        )
        .expect("write server.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Pki { dir }
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        fs::read(self.dir.path().join("ca.pem")).expect("read ca.pem")
    }

    pub fn server(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("server.pem"),
            self.dir.path().join("server.key"),
        )
    }

    /// A folder for skopeo's `--cert-dir` (`ca.crt` = the CA).
    pub fn cert_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("skopeo-certs");
        fs::create_dir_all(&dir).expect("create cert dir");
        fs::write(dir.join("ca.crt"), self.ca_pem()).expect("write ca.crt");
        dir
    }
}

/// `skopeo inspect --raw` over verified TLS (the CA in `cert_dir`), optionally
/// with credentials.
pub fn skopeo_raw_tls(reference: &str, cert_dir: &Path, creds: Option<&Secret>) -> Option<Vec<u8>> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=true", "--cert-dir"])
        .arg(cert_dir);
    match creds {
        Some(s) => cmd.arg("--creds").arg(format!("{}:{}", s.user, s.password)),
        None => cmd.arg("--no-creds"),
    };
    cmd.arg(format!("docker://{reference}"));
    // Never read the developer's container auth file.
    cmd.env("REGISTRY_AUTH_FILE", cert_dir.join("no-auth.json"));
    let out = run_bytes(cmd);
    (out.code == 0).then_some(out.stdout)
}
