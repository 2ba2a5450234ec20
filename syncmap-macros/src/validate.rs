//! Checks the function and plans its cache key: which arguments go into it, as what owned types,
//! and how to look it up by a borrowed view.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::parse::Options;

/// How to cache one function.
pub(crate) struct Plan {
    /// The cache's key type `K`.
    pub(crate) key_ty: TokenStream,
    /// The cache's value type `V`.
    pub(crate) value_ty: Type,
    /// Statements that run before the lookup (an explicit `key` expression).
    pub(crate) setup: TokenStream,
    /// An expression of type `&Q` with `Q: Hash + Equivalent<K>`: the borrowed lookup key.
    pub(crate) view: TokenStream,
    /// An expression of type `K`: the owned key, built only on a miss.
    pub(crate) make_key: TokenStream,
    /// A closure `|&V| -> bool`: whether to cache a value.
    pub(crate) keep: TokenStream,
    /// The arguments to pass on to `<fn>_uncached`, `self` first.
    pub(crate) call_args: Vec<TokenStream>,
    /// Whether the function is an associated function (takes `self`, mentions `Self`, or is
    /// marked `in_impl`): its siblings are then called as `Self::..`.
    pub(crate) in_impl: bool,
    /// Whether the cache must be found per instantiation (generic parameters or `Self`).
    pub(crate) per_instantiation: bool,
    /// Assertions that each key component is `Hash + Eq`, spanned at its argument.
    pub(crate) key_asserts: TokenStream,
}

/// One part of the key.
struct Component {
    owned: TokenStream,
    view: TokenStream,
    make: TokenStream,
    span: Span,
}

/// Collects errors instead of stopping at the first.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        self.add(syn::Error::new(span, message));
    }

    /// An error spanning all of `tokens` (on stable, `Span::join` is unavailable).
    fn push_spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.add(syn::Error::new_spanned(tokens, message));
    }

    fn add(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }
}

pub(crate) fn plan(function: &ItemFn, options: &Options) -> syn::Result<Plan> {
    let sig = &function.sig;
    let mut errors = Errors::default();

    if let Some(constness) = &sig.constness {
        errors.push(
            constness.span(),
            "#[memoize] cannot cache a `const fn`: a cache lives at run time",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(
            variadic.span(),
            "#[memoize] cannot cache a variadic function",
        );
    }
    let value_ty = match &sig.output {
        ReturnType::Type(_, ty) => {
            if let Some(future) = crate::expand_async::names_a_future(ty) {
                errors.push_spanned(future, crate::expand_async::FUTURE_RETURN);
            } else {
                reject_impl_trait(ty, &mut errors);
                reject_single_threaded(ty, "the return type", &mut errors);
                if let Type::Reference(reference) = &**ty {
                    errors.push_spanned(
                        ty,
                        format!(
                            "#[memoize] cannot cache a borrowed return type: the cache outlives the \
                             call, so it stores owned values; return an owned type (`{}`) or an \
                             `Arc` (`std::sync::Arc<{}>`)",
                            owned_name(&reference.elem),
                            pretty(&reference.elem),
                        ),
                    );
                }
            }
            Some((**ty).clone())
        }
        ReturnType::Default => {
            errors.push(
                sig.ident.span(),
                format!(
                    "#[memoize] needs a return type to cache: `fn {}(..) -> T`",
                    sig.ident
                ),
            );
            None
        }
    };
    let return_kind = value_ty.as_ref().map_or(ReturnKind::Other, return_kind);

    let ignored: Vec<&Ident> = options
        .ignore
        .as_ref()
        .map(|(_, names)| names.iter().collect())
        .unwrap_or_default();
    let mut seen_ignored = vec![false; ignored.len()];
    let mut is_ignored = |name: &str| -> bool {
        match ignored.iter().position(|i| *i == name) {
            Some(index) => {
                seen_ignored[index] = true;
                true
            }
            None => false,
        }
    };

    let mut components = Vec::new();
    let mut call_args = Vec::new();
    let mut has_receiver = false;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                has_receiver = true;
                call_args.push(quote!(self));
                if receiver.reference.is_some() && receiver.mutability.is_some() {
                    errors.push_spanned(
                        receiver,
                        "#[memoize] cannot cache a method taking `&mut self`: its result may \
                         depend on state it changes",
                    );
                    continue;
                }
                if receiver.colon_token.is_some() {
                    errors.push(
                        receiver.span(),
                        "#[memoize] supports `self` and `&self` receivers only",
                    );
                    continue;
                }
                if is_ignored("self") {
                    continue;
                }
                let span = receiver.span();
                let view = if receiver.reference.is_some() {
                    quote!(self)
                } else {
                    quote!(&self)
                };
                components.push(Component {
                    owned: quote_spanned!(span=> Self),
                    make: quote!((&&::syncmemo::__private::CloneProbe(#view)).clone_part()),
                    view,
                    span,
                });
            }
            FnArg::Typed(typed) => {
                let ident = match &*typed.pat {
                    Pat::Ident(pat) if pat.subpat.is_none() && pat.by_ref.is_none() => {
                        pat.ident.clone()
                    }
                    other => {
                        errors.push(
                            other.span(),
                            "#[memoize] needs a plain name for each argument (it becomes part of \
                             the cache key); destructure inside the body instead",
                        );
                        continue;
                    }
                };
                call_args.push(ident.to_token_stream());
                reject_impl_trait(&typed.ty, &mut errors);
                if let Type::Reference(reference) = &*typed.ty {
                    if let Some(mutability) = &reference.mutability {
                        let _ = mutability;
                        errors.push_spanned(
                            &typed.ty,
                            format!(
                                "#[memoize] cannot cache a function taking `&mut` (argument `{ident}`): \
                                 its result may depend on what it changes"
                            ),
                        );
                        continue;
                    }
                }
                if is_ignored(&ident.to_string()) {
                    continue;
                }
                if options.key.is_none() {
                    reject_single_threaded(&typed.ty, &format!("argument `{ident}`"), &mut errors);
                }
                if let (None, Type::Reference(reference)) = (&options.key, &*typed.ty) {
                    if let Type::TraitObject(object) = &*reference.elem {
                        errors.push_spanned(
                            &typed.ty,
                            format!(
                                "#[memoize] cannot key the cache on `&{}` (argument `{ident}`): \
                                 a trait object has no owned form to store in the cache; leave \
                                 it out with `#[memoize(ignore({ident}))]`, or key the cache on \
                                 data taken from it with `#[memoize(key: T = expr)]`",
                                pretty(object)
                            ),
                        );
                        continue;
                    }
                }
                components.push(component(&ident, &typed.ty, &sig.generics));
            }
        }
    }
    for (name, seen) in ignored.iter().zip(&seen_ignored) {
        if !seen {
            errors.push(
                name.span(),
                format!("`ignore({name})`: the function has no argument `{name}`"),
            );
        }
    }

    if let Some(span) = options.cache_err {
        if return_kind != ReturnKind::Result {
            errors.push(span, "`cache_err` applies to functions returning `Result`");
        }
    }
    if let Some((span, returns)) = options.tier_errors {
        if options.shared.is_none() {
            errors.push(
                span,
                "`tier_errors` applies to `shared` functions: `#[memoize(shared, tier_errors = \
                 \"return\")]`",
            );
        } else if returns && return_kind != ReturnKind::Result {
            errors.push(
                span,
                "`tier_errors = \"return\"` applies to functions returning `Result`: a fault of \
                 the shared tier is returned as `Err(E::from(syncmemo::tier::TierError))`",
            );
        }
    }
    if let Some(span) = options.skip_none {
        if return_kind != ReturnKind::Option {
            errors.push(span, "`skip_none` applies to functions returning `Option`");
        }
    }
    match (&options.max_weight, &options.weigher, &options.capacity) {
        (Some((span, _)), _, Some(_)) => errors.push(
            *span,
            "`max_weight` and `capacity` cannot be combined: a cache is bounded by its number \
             of entries (`capacity`) or by their total weight (`max_weight` with `weigher`)",
        ),
        (Some((span, _)), None, None) => errors.push(
            *span,
            "`max_weight` needs a `weigher`: `max_weight = 1_000_000, weigher = my_weight`, \
             where `fn my_weight(key: &K, value: &V) -> u64`",
        ),
        (None, Some((span, _)), _) => errors.push(
            *span,
            "`weigher` needs a `max_weight`, the total weight to keep: \
             `max_weight = 1_000_000, weigher = my_weight`",
        ),
        _ => {}
    }
    if let (Some(_), Some((ignore_span, _))) = (&options.key, &options.ignore) {
        errors.push(
            *ignore_span,
            "`ignore` has no effect with `key`: the key is exactly the `key` expression",
        );
    }

    if let Some(errors) = errors.0 {
        return Err(errors);
    }
    let value_ty = value_ty.expect("checked above");

    let keep = match return_kind {
        ReturnKind::Result if options.cache_err.is_none() => {
            quote!(|value: &#value_ty| ::core::result::Result::is_ok(value))
        }
        ReturnKind::Option if options.skip_none.is_some() => {
            quote!(|value: &#value_ty| ::core::option::Option::is_some(value))
        }
        _ => quote!(|_: &#value_ty| true),
    };

    let key_var = format_ident!("__syncmap_key");
    let (key_ty, setup, view, make_key, asserted) = if let Some((_, ty, expr)) = &options.key {
        let span = ty.span();
        (
            ty.to_token_stream(),
            quote!(let #key_var: #ty = #expr;),
            quote!(&#key_var),
            quote!((&&::syncmemo::__private::CloneProbe(&#key_var)).clone_part()),
            vec![(span, ty.to_token_stream())],
        )
    } else {
        let asserted = components
            .iter()
            .map(|c| (c.span, c.owned.clone()))
            .collect();
        match components.as_slice() {
            [] => (quote!(()), quote!(), quote!(&()), quote!(()), asserted),
            [one] => (
                one.owned.clone(),
                quote!(),
                one.view.clone(),
                one.make.clone(),
                asserted,
            ),
            many => {
                if many.len() > 12 {
                    return Err(syn::Error::new(
                        sig.inputs.span(),
                        "#[memoize] supports at most 12 cached arguments; use `key: T = ..` or \
                         `ignore(..)`",
                    ));
                }
                let owned = many.iter().map(|c| &c.owned);
                let views = many.iter().map(|c| &c.view);
                let makes = many.iter().map(|c| &c.make);
                (
                    quote!((#(#owned,)*)),
                    quote!(),
                    quote!(&::syncmemo::__private::KeyRef((#(#views,)*))),
                    quote!((#(#makes,)*)),
                    asserted,
                )
            }
        }
    };
    // One check per key part and one for the value, each spanned at its type: a failing one is
    // the function's only error (see `expand`), worded by `KeyPart` / `MemoValue`.
    let shared_parts = asserted.clone();
    let mut key_asserts: TokenStream = asserted
        .into_iter()
        .map(|(span, ty)| {
            quote_spanned! {span=>
                <#ty as ::syncmemo::memo::KeyPart>::__assert();
            }
        })
        .collect();
    let value_span = value_ty.span();
    key_asserts.extend(quote_spanned! {value_span=>
        <#value_ty as ::syncmemo::memo::MemoValue>::__assert();
    });
    if options.shared.is_some() {
        // `shared` stores keys and values in Redis: each must be a serde type.
        for (span, ty) in &shared_parts {
            key_asserts.extend(quote_spanned! {*span=>
                <#ty as ::syncmemo::tier::SharedType>::__assert();
            });
        }
        key_asserts.extend(quote_spanned! {value_span=>
            <#value_ty as ::syncmemo::tier::SharedType>::__assert();
        });
        if let Some((_, true)) = options.tier_errors {
            key_asserts.extend(quote_spanned! {value_span=>
                let _ = <#value_ty as ::syncmemo::tier::FromTierError>::from_tier_error;
            });
        }
    }

    let per_instantiation = has_receiver
        || options.in_impl.is_some()
        || sig
            .generics
            .params
            .iter()
            .any(|p| !matches!(p, syn::GenericParam::Lifetime(_)))
        || mentions_self(&sig.inputs.to_token_stream())
        || mentions_self(&sig.output.to_token_stream());

    Ok(Plan {
        key_ty,
        value_ty,
        setup,
        view,
        make_key,
        keep,
        call_args,
        in_impl: has_receiver
            || options.in_impl.is_some()
            || mentions_self(&sig.inputs.to_token_stream())
            || mentions_self(&sig.output.to_token_stream()),
        per_instantiation,
        key_asserts,
    })
}

/// The key component of an argument `ident: ty`.
fn component(ident: &Ident, ty: &Type, generics: &syn::Generics) -> Component {
    let span = ty.span();
    match ty {
        // `&T` for a sized `T` is keyed by `T` itself (what `T::Owned` is for every `Clone`
        // type), cloned through the probe: a `T` that is not `Clone` is then one `KeyPart`
        // error at the argument, not a `ToOwned` error in each place that names the key.
        Type::Reference(reference) if is_sized_path(&reference.elem, generics) => {
            let elem = &reference.elem;
            Component {
                owned: quote!(#elem),
                view: quote!(#ident),
                make: quote!((&&::syncmemo::__private::CloneProbe(#ident)).clone_part()),
                span,
            }
        }
        Type::Reference(reference) => {
            let elem = &reference.elem;
            let owned = match &**elem {
                Type::Path(path) if path.qself.is_none() && path.path.is_ident("str") => {
                    quote_spanned!(span=> ::std::string::String)
                }
                Type::Slice(slice) => {
                    let item = &slice.elem;
                    quote_spanned!(span=> ::std::vec::Vec<#item>)
                }
                _ => quote_spanned!(span=> <#elem as ::std::borrow::ToOwned>::Owned),
            };
            Component {
                owned,
                view: quote!(#ident),
                make: quote!(::std::borrow::ToOwned::to_owned(#ident)),
                span,
            }
        }
        _ => Component {
            owned: quote_spanned!(span=> #ty),
            view: quote!(&#ident),
            make: quote!((&&::syncmemo::__private::CloneProbe(&#ident)).clone_part()),
            span,
        },
    }
}

/// Whether `ty` is a path to a type known to be sized: not `str`, `Path`, `OsStr` or `CStr`
/// (whose owned forms differ), and not a type parameter (which may be `?Sized`).
fn is_sized_path(ty: &Type, generics: &syn::Generics) -> bool {
    let Type::Path(path) = ty else {
        return false;
    };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    let unsized_std = ["str", "Path", "OsStr", "CStr"]
        .iter()
        .any(|name| last.ident == name);
    let type_param = path.qself.is_none()
        && path.path.segments.len() == 1
        && generics
            .type_params()
            .any(|param| param.ident == last.ident);
    path.qself.is_none() && !unsized_std && !type_param
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReturnKind {
    Result,
    Option,
    Other,
}

/// `Result<..>` (any path ending in `Result`, such as `io::Result`) or `Option<..>`.
fn return_kind(ty: &Type) -> ReturnKind {
    if let Type::Path(path) = ty {
        if let Some(last) = path.path.segments.last() {
            if last.ident == "Result" {
                return ReturnKind::Result;
            }
            if last.ident == "Option" {
                return ReturnKind::Option;
            }
        }
    }
    ReturnKind::Other
}

/// The owned counterpart of a borrowed type, for messages: `str` is `String`, `[T]` is `Vec<T>`.
fn owned_name(ty: &Type) -> String {
    match ty {
        Type::Path(path) if path.qself.is_none() && path.path.is_ident("str") => "String".into(),
        Type::Slice(slice) => format!("Vec<{}>", pretty(&slice.elem)),
        other => pretty(other),
    }
}

/// Tokens as a user would write them: `std::sync::Arc<str>`, not `std :: sync :: Arc < str >`.
fn pretty(tokens: impl ToTokens) -> String {
    let mut text = tokens.to_token_stream().to_string();
    for (spaced, tight) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" < ", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
    ] {
        text = text.replace(spaced, tight);
    }
    text
}

/// Reports `Rc`, `RefCell` and `std::cell::Cell` in a key part or the return type: the cache is
/// shared between threads, so they can never be cached (and the error rustc would give names
/// the cache's internals).
fn reject_single_threaded(ty: &Type, what: &str, errors: &mut Errors) {
    struct Finder<'a> {
        what: &'a str,
        errors: &'a mut Errors,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type_path(&mut self, node: &'ast syn::TypePath) {
            let segments: Vec<String> = node
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            let last = segments.last().map(String::as_str).unwrap_or_default();
            let qualified_cell = segments.len() >= 2
                && segments[segments.len() - 2] == "cell"
                && (last == "Cell" || last == "UnsafeCell");
            if node.qself.is_none() && (last == "Rc" || last == "RefCell" || qualified_cell) {
                let replacement = match last {
                    "Rc" => "`std::sync::Arc`",
                    _ => "`std::sync::Mutex` or an atomic",
                };
                let tail = if self.what.starts_with("argument") {
                    ", or leave the argument out of the key with `ignore(..)` or `key: T = expr`"
                } else {
                    ""
                };
                self.errors.push_spanned(
                    node,
                    format!(
                        "#[memoize] cannot cache `{}` ({}): the cache is shared between threads, \
                         and `{last}` is not thread-safe; use {replacement}{tail}",
                        pretty(node),
                        self.what
                    ),
                );
            }
            syn::visit::visit_type_path(self, node);
        }
    }
    Finder { what, errors }.visit_type(ty);
}

/// Reports every `impl Trait` in a type.
fn reject_impl_trait(ty: &Type, errors: &mut Errors) {
    struct Finder<'a>(&'a mut Errors);
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type_impl_trait(&mut self, node: &'ast syn::TypeImplTrait) {
            self.0.push_spanned(
                node,
                "#[memoize] cannot cache `impl Trait` types: name the type (the cache stores \
                 keys and values in a static)",
            );
        }
    }
    Finder(errors).visit_type(ty);
}

/// Whether the tokens use `Self`.
fn mentions_self(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => ident == "Self",
        TokenTree::Group(group) => mentions_self(&group.stream()),
        _ => false,
    })
}
