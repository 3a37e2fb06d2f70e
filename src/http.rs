//! The HTTP client every remote fetch builds on (registries, `ADD` of URLs, Debian
//! mirrors): one user agent and one TLS crypto provider for all of them.

/// A client builder with imgbuild's user agent, its TLS crypto provider installed.
pub fn client_builder() -> reqwest::ClientBuilder {
    // ring rather than aws-lc-rs (reqwest's default): aws-lc-rs seeds its random generator
    // from CPU jitter at its first use, about 70 ms of CPU in every process, which was
    // half of a rebuild that only checks its base images' tags. An `Err` means a provider
    // is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().user_agent(concat!("imgbuild/", env!("CARGO_PKG_VERSION")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_build_with_the_provider_installed_twice() {
        super::client_builder().build().unwrap();
        super::client_builder().build().unwrap();
    }
}
