//! Reads a name's TXT records through the operator's resolver (`domains.resolver`) or the
//! system's: how an organisation proves it controls an email domain.

use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

use crate::config::DomainsConfig;

/// Why no TXT records were read.
#[derive(Debug)]
pub enum DnsError {
    /// The name has no TXT records (or does not exist).
    NotFound,
    /// The resolver could not be asked or did not answer.
    Unavailable(String),
}

fn resolver(cfg: &DomainsConfig) -> Result<TokioResolver, DnsError> {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(cfg.timeout_ms as u64);
    opts.attempts = 1;
    // Each check asks afresh: a record just published must count.
    opts.cache_size = 0;
    let builder = match cfg.resolver.as_deref() {
        Some(addr) => {
            let addr = addr.parse().map_err(|e| DnsError::Unavailable(format!("domains.resolver: {e}")))?;
            let mut config = ResolverConfig::new();
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        }
        None => TokioResolver::builder_tokio().map_err(|e| DnsError::Unavailable(e.to_string()))?,
    };
    Ok(builder.with_options(opts).build())
}

/// The TXT records of `name`, each one's strings joined (RFC 7208 §3.3 style).
pub async fn txt(cfg: &DomainsConfig, name: &str) -> Result<Vec<String>, DnsError> {
    // A fully qualified name: no search domains of the machine appended.
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match resolver(cfg)?.txt_lookup(fqdn).await {
        Ok(lookup) => Ok(lookup.iter().map(|r| r.txt_data().iter().map(|part| String::from_utf8_lossy(part)).collect()).collect()),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Err(DnsError::NotFound),
        Err(e) => Err(DnsError::Unavailable(e.to_string())),
    }
}
