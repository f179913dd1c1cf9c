//! The HTTP clients deliveries go through: one shared client for Providers
//! with default transport settings, and one per distinct [`Transport`]
//! (CA, client certificate, proxy), built on first use and kept.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::transport::{self, Transport};

/// Distinct custom transports kept at once; past it the cache starts over
/// (clients are rebuilt on their next use), so rotating certificates cannot
/// grow it without bound.
const MAX_CLIENTS: usize = 256;

pub struct Clients {
    default: reqwest::Client,
    custom: Mutex<HashMap<Transport, reqwest::Client>>,
}

impl Clients {
    pub fn new() -> Self {
        Self {
            default: transport::base_builder().build().unwrap_or_default(),
            custom: Mutex::new(HashMap::new()),
        }
    }

    /// The client for a transport; an error (masked) when its settings
    /// cannot make one, which routing normally reports first.
    pub fn get(&self, transport: &Transport) -> Result<reqwest::Client, String> {
        if transport.is_default() {
            return Ok(self.default.clone());
        }
        let mut custom = self.custom.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = custom.get(transport) {
            return Ok(client.clone());
        }
        let client = transport.client()?;
        if custom.len() >= MAX_CLIENTS {
            custom.clear();
        }
        custom.insert(transport.clone(), client.clone());
        Ok(client)
    }
}

impl Default for Clients {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_distinct_transport() {
        let clients = Clients::new();
        let proxy = |address: &str| Transport {
            proxy: Some(transport::proxy_url(address, None, None).expect("proxy")),
            ..Transport::default()
        };
        clients.get(&Transport::default()).expect("default");
        clients.get(&proxy("http://127.0.0.1:1")).expect("first");
        clients.get(&proxy("http://127.0.0.1:1")).expect("same");
        clients.get(&proxy("http://127.0.0.1:2")).expect("second");
        assert_eq!(clients.custom.lock().expect("lock").len(), 2);
    }
}
