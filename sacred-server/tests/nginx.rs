//! The reverse-proxy example, `deploy/nginx/sacred.conf`, is a configuration
//! nginx accepts (`nginx -t`), with a certificate generated here.

use std::path::Path;
use std::process::Command;

#[test]
fn the_nginx_example_passes_nginx_t() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("fullchain.pem");
    let key = dir.path().join("privkey.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=sacred.example.com", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/sacred.conf");
    let site = std::fs::read_to_string(example)
        .unwrap()
        .replace("/etc/ssl/sacred/fullchain.pem", cert.to_str().unwrap())
        .replace("/etc/ssl/sacred/privkey.pem", key.to_str().unwrap())
        // An unprivileged port: the check binds nothing, but keep it harmless.
        .replace("listen 443 ssl;", "listen 127.0.0.1:8443 ssl;");
    let site_path = dir.path().join("sacred.conf");
    std::fs::write(&site_path, site).unwrap();
    let root = dir.path().display();
    let main = format!(
        "pid {root}/nginx.pid;\nerror_log {root}/error.log;\nevents {{}}\n\
         http {{\n  access_log off;\n  client_body_temp_path {root};\n  proxy_temp_path {root};\n\
         fastcgi_temp_path {root};\n  uwsgi_temp_path {root};\n  scgi_temp_path {root};\n\
         include {};\n}}\n",
        site_path.display()
    );
    let main_path = dir.path().join("nginx.conf");
    std::fs::write(&main_path, main).unwrap();
    let nginx = ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find(|name| Command::new(name).arg("-v").output().is_ok())
        .expect("nginx is installed (scripts/test installs nginx-light)");
    let checked = Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&main_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
}
