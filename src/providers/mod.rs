//! The provider catalogue: built-in types, their base URLs, auth styles and formats,
//! credentials, and the configured instances.

mod base_url;
mod catalogue;
mod claude_output_ceilings;
mod credential;
mod format_facts;
mod kind;
mod kind_facts;
mod model_ref;
mod model_traits;
mod secret;
mod tls_roots;

pub use crate::config::env_prefix;
pub use base_url::{BaseUrl, BaseUrlError};
pub use catalogue::{
    checks_thinking_signatures, how_to_configure, Provider, ProviderCatalogue, Timeouts,
};
pub use claude_output_ceilings::claude_output_ceiling;
pub use credential::{is_caller_key_marker, KeyId, KeyRing, ProviderCredential, CALLER_KEY_MARKER};
pub use format_facts::{FormatFacts, ANTHROPIC_VERSION};
pub use kind::{AuthStyle, ProviderKind, WireFormat};
pub use kind_facts::KindFacts;
pub use model_ref::{ModelAfterPrefixError, ModelRef};
pub use model_traits::{o_series, reasoning_family, ModelTraits};
pub use secret::{KeyForm, Secret};
pub use tls_roots::{load_roots_with_ca_file, read_ca_file, usable_system_roots, TlsRoots};
