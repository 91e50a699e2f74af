//! Prompts, resources and resource templates, listed by the probe beside the tools (at
//! readiness and at each tool refresh), only from a server that declared the capability, so
//! a server of tools alone costs nothing more. Every page is followed up to [`MAX_PAGES`]
//! (a cursor that never ends is cut there) and at most [`MAX_ENTRIES`] entries of a kind are
//! kept. A list that fails is not an empty list: the probe reports nothing for it, and the
//! last good one stays in the directory.

use crate::offers::{MAX_ENTRIES, OfferEntry, Offers, entries_of};

use super::wire::OffersPage;
use super::{MAX_PAGES, MAX_TOOLS_BODY, ProbeClient, ProbeError};

/// What the server declared at its handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Declared {
    pub(super) prompts: bool,
    pub(super) resources: bool,
    pub(super) subscribe: bool,
}

impl From<&super::wire::Capabilities> for Declared {
    fn from(capabilities: &super::wire::Capabilities) -> Self {
        Declared {
            prompts: capabilities.prompts(),
            resources: capabilities.resources(),
            subscribe: capabilities.subscribe(),
        }
    }
}

/// Which list of a page.
#[derive(Clone, Copy)]
enum Kind {
    Prompts,
    Resources,
    Templates,
}

impl ProbeClient {
    /// Lists what the server declared (nothing when it declared neither) and keeps it for
    /// [`ProbeClient::take_offers`]. A failure is logged and leaves nothing to take.
    pub(super) async fn refresh_offers(&mut self) {
        let declared = self.declared;
        if !declared.prompts && !declared.resources {
            // Nothing asked of the server: it offers nothing (a server that stopped
            // declaring them is emptied).
            self.offers = Some(Offers::default());
            return;
        }
        match self.list_offers(declared).await {
            Ok(offers) => self.offers = Some(offers),
            Err(error) => {
                // The answer may have been cut short: no half-read connection is kept.
                self.connection = None;
                tracing::debug!(port = self.port, error = %error, "listing prompts or resources failed; the last lists are kept");
            }
        }
    }

    /// What the last readiness or tool refresh listed, once.
    pub fn take_offers(&mut self) -> Option<Offers> {
        self.offers.take()
    }

    async fn list_offers(&mut self, declared: Declared) -> Result<Offers, ProbeError> {
        let mut offers = Offers {
            prompts_declared: declared.prompts,
            resources_declared: declared.resources,
            subscribe: declared.subscribe,
            ..Offers::default()
        };
        if declared.prompts {
            offers.prompts = self.list_all(Kind::Prompts).await?;
        }
        if declared.resources {
            offers.resources = self.list_all(Kind::Resources).await?;
            offers.templates = self.list_all(Kind::Templates).await?;
        }
        Ok(offers)
    }

    /// Every page of one list.
    async fn list_all(&mut self, kind: Kind) -> Result<Vec<OfferEntry>, ProbeError> {
        let (method, key) = match kind {
            Kind::Prompts => ("prompts/list", "name"),
            Kind::Resources => ("resources/list", "uri"),
            Kind::Templates => ("resources/templates/list", "uriTemplate"),
        };
        let mut entries = Vec::new();
        let mut params = String::new();
        for _ in 0..MAX_PAGES {
            let page = self
                .request::<OffersPage>(method, &params, MAX_TOOLS_BODY)
                .await?;
            let items = match kind {
                Kind::Prompts => page.prompts,
                Kind::Resources => page.resources,
                Kind::Templates => page.templates,
            };
            entries.extend(entries_of(items, key));
            if entries.len() > MAX_ENTRIES {
                return Err(ProbeError::Protocol {
                    at: self.at.clone(),
                    method,
                    reason: format!("more than {MAX_ENTRIES} entries"),
                });
            }
            match page.next_cursor {
                Some(cursor) if !cursor.is_empty() => {
                    params.clear();
                    params.push_str(r#""cursor":"#);
                    params.push_str(&serde_json::to_string(&cursor).unwrap_or_default());
                }
                _ => return Ok(entries),
            }
        }
        Err(ProbeError::Protocol {
            at: self.at.clone(),
            method,
            reason: format!("more than {MAX_PAGES} pages"),
        })
    }
}
