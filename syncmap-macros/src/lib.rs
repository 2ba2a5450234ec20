//! The `#[memoize]` attribute of the [`syncmemo`](https://docs.rs/syncmemo) crate.
//!
//! Use it through `syncmemo::memoize`; its documentation, with runnable examples of every
//! option, lives there. This crate only rewrites functions:
//! `parse` reads the options, `validate` checks the function and plans the
//! cache key, and `expand` generates the code, which calls `::syncmemo::__private`.
//! On any error the macro emits the errors, pointing at the offending tokens, *and* the function
//! unchanged, so the rest of the crate still type-checks.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use proc_macro::TokenStream;

mod expand;
mod expand_async;
mod parse;
mod validate;

/// Caches the results of a function in a per-function static `syncmemo::Memo`.
///
/// See the `syncmemo` crate for the documentation and examples.
#[proc_macro_attribute]
pub fn memoize(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match expand::memoize(args.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            tokens.into()
        }
    }
}
