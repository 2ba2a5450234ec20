//! The `#[memoize]` attribute (stub: passes the function through).
use proc_macro::TokenStream;

/// Memoizes a function (stub).
#[proc_macro_attribute]
pub fn memoize(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
