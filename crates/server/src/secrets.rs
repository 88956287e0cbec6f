//! Secrets from files, so that they never appear in `ps` or in a shell's
//! history: `--jwt-secret-file`, `--api-key-file`, `--jwt-keys-file`.
//!
//! # Format
//!
//! A secret file holds the secret alone; one trailing newline (`\n` or
//! `\r\n`), which editors and `echo` add, is removed, and nothing else: a
//! secret may contain spaces. A keys file holds one `kid=secret` per line
//! (blank lines and lines starting with `#` are skipped), for rotating the
//! JWT secret by the tokens' `kid` header (see `fanout_ws::token`).
//!
//! Giving a secret both inline and as a file is an error (which one wins
//! would be a guess), and so is an empty one.

use std::path::Path;

/// The secret in `path` (see the module docs). Errors name the setting and
/// the file, never the content.
pub fn read_secret(setting: &str, path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{setting}: {}: {e}", path.display()))?;
    let s = text.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&text);
    if s.is_empty() {
        return Err(format!("{setting}: {} is empty", path.display()));
    }
    Ok(s.to_string())
}

/// The inline value or the file's, not both.
pub fn inline_or_file(
    setting: &str,
    inline: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, String> {
    match (inline.filter(|s| !s.is_empty()), file) {
        (Some(_), Some(_)) => Err(format!("give --{setting} or --{setting}-file, not both")),
        (Some(s), None) => Ok(Some(s)),
        (None, Some(p)) => read_secret(&format!("{setting}-file"), p).map(Some),
        (None, None) => Ok(None),
    }
}

/// The `kid=secret` lines of a keys file.
pub fn read_keys(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("jwt-keys-file: {}: {e}", path.display()))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((kid, secret)) = line.split_once('=') else {
            return Err(format!("jwt-keys-file: {} line {}: expected kid=secret", path.display(), i + 1));
        };
        keys.push((kid.trim().to_string(), secret.to_string()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("fanout-secrets-{}-{name}", std::process::id()));
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn secret_files() {
        let p = file("a", "s3cret with space\n");
        assert_eq!(read_secret("x", &p).unwrap(), "s3cret with space");
        let p = file("b", "crlf\r\n");
        assert_eq!(read_secret("x", &p).unwrap(), "crlf");
        let p = file("c", "\n");
        assert!(read_secret("x", &p).unwrap_err().contains("empty"));
        let p = file("d", "from-file");
        assert_eq!(inline_or_file("api-key", None, Some(&p)).unwrap().as_deref(), Some("from-file"));
        let e = inline_or_file("api-key", Some("inline".into()), Some(&p)).unwrap_err();
        assert!(e.contains("not both") && !e.contains("inline") && !e.contains("from-file"), "{e}");
        assert!(read_secret("x", Path::new("/nonexistent/fanout")).is_err());
    }

    #[test]
    fn keys_files() {
        let p = file("k", "# rotation\n1=old-secret\n\n2=new=secret\n");
        assert_eq!(
            read_keys(&p).unwrap(),
            vec![("1".into(), "old-secret".into()), ("2".into(), "new=secret".into())]
        );
        let p = file("k2", "no-equals\n");
        assert!(read_keys(&p).unwrap_err().contains("line 1"));
    }
}
