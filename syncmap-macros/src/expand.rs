//! Generates the cached function, `<fn>_cache()` and `<fn>_uncached`.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{GenericParam, ItemFn};

use crate::{parse, validate};

pub(crate) fn memoize(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let function: ItemFn = syn::parse2(item.clone()).map_err(|error| {
        syn::Error::new(
            error.span(),
            "#[memoize] applies to functions (free functions, methods and associated functions)",
        )
    })?;
    // Report option errors and signature errors together.
    let options = parse::options(args);
    let plan = match &options {
        Ok(options) => validate::plan(&function, options),
        Err(_) => validate::plan(&function, &parse::Options::default()),
    };
    let (options, plan) = match (options, plan) {
        (Ok(options), Ok(plan)) => (options, plan),
        (Err(mut a), Err(b)) => {
            a.combine(b);
            return Err(a);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };

    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &function;
    let name = &sig.ident;
    let cache_fn = format_ident!("{}_cache", name);
    let uncached_fn = format_ident!("{}_uncached", name);
    let validate::Plan {
        key_ty,
        value_ty,
        setup,
        view,
        make_key,
        keep,
        call_args,
        in_impl,
        per_instantiation,
        key_asserts,
    } = plan;

    let capacity = match options.capacity {
        Some((_, n)) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let ttl = match options.ttl {
        Some((_, d)) => {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            quote!(::core::option::Option::Some(::core::time::Duration::new(#secs, #nanos)))
        }
        None => quote!(::core::option::Option::None),
    };
    // `shared`: the tier's hook for these key and value types; a key or value type that is not
    // serde's `Serialize + Deserialize` is reported at the `shared` token.
    let shared = match options.shared {
        Some(span) => quote_spanned! {span=>
            ::core::option::Option::Some(::syncmemo::__private::shared::<#key_ty, #value_ty>)
        },
        None => quote!(::core::option::Option::None),
    };
    let memo_options = quote! {
        ::syncmemo::__private::MemoOptions { capacity: #capacity, ttl: #ttl, shared: #shared }
    };
    let memo_name = quote!(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#name)
    ));
    let debug = quote! {
        || ::syncmemo::__private::MemoDebug {
            key: ::syncmemo::__private::debug_fn!(#key_ty),
            value: ::syncmemo::__private::debug_fn!(#value_ty),
        }
    };

    // The generics to name when calling the siblings (types and consts; lifetimes are inferred).
    let turbofish_params: Vec<_> = sig
        .generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(t) => Some(t.ident.clone()),
            GenericParam::Const(c) => Some(c.ident.clone()),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    let turbofish = if turbofish_params.is_empty() {
        quote!()
    } else {
        quote!(::<#(#turbofish_params),*>)
    };
    let path_prefix = if in_impl { quote!(Self::) } else { quote!() };

    // Calls whose bounds need a `Hash + Eq` key are spanned on the argument list, so a
    // non-`Hash` argument is reported there (next to the precise errors of `key_asserts`)
    // rather than on the attribute.
    let args_span = sig.paren_token.span.join();
    let hit = Ident::new("__hit", args_span);
    let miss = Ident::new("__miss_owned", args_span);
    let get = Ident::new("get", args_span);
    let (impl_generics, _, where_clause) = sig.generics.split_for_impl();
    let lookup = if per_instantiation {
        quote! {
            static __SYNCMAP_MEMOS: ::syncmemo::__private::GenericMemos =
                ::syncmemo::__private::GenericMemos::new();
            __SYNCMAP_MEMOS.#get::<#key_ty, #value_ty>(#memo_name, #memo_options, #debug)
        }
    } else {
        quote! {
            static __SYNCMAP_MEMO: ::syncmemo::__private::StaticMemo<#key_ty, #value_ty> =
                ::syncmemo::__private::StaticMemo::new(#memo_name, #memo_options);
            __SYNCMAP_MEMO.#get(#debug)
        }
    };

    let other_attrs: Vec<_> = attrs
        .iter()
        .filter(|attr| !attr.path().is_ident("doc"))
        .collect();
    let cache_doc = format!("The cache of [`{name}`], created on its first call (`#[memoize]`).");
    let uncached_doc = format!("[`{name}`] without the cache: runs the body every time.");

    let mut uncached_sig = sig.clone();
    uncached_sig.ident = uncached_fn.clone();

    // Outside a known `impl`, the generated functions cannot name each other (`f_cache()` in a
    // module is `Self::f_cache()` in an `impl`): both find the cache by site, and the cached
    // function runs the body inline instead of calling `f_uncached`.
    let site = quote!(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#name),
        "@",
        ::core::line!(),
        ":",
        ::core::column!()
    ));
    let (lookup, wrapper_lookup, compute) = if in_impl {
        (
            lookup,
            quote!(#path_prefix #cache_fn #turbofish()),
            quote!(move || #path_prefix #uncached_fn #turbofish(#(#call_args),*)),
        )
    } else {
        let by_site = if per_instantiation {
            quote!(::syncmemo::__private::site_memo::<#key_ty, #value_ty>(
                #site, #memo_name, #memo_options, #debug
            ))
        } else {
            quote!({
                static __SYNCMAP_SITE: ::syncmemo::__private::SiteMemo<#key_ty, #value_ty> =
                    ::syncmemo::__private::SiteMemo::new();
                __SYNCMAP_SITE.#get(#site, #memo_name, #memo_options, #debug)
            })
        };
        let output = match &sig.output {
            syn::ReturnType::Type(_, ty) => quote!(-> #ty),
            syn::ReturnType::Default => quote!(),
        };
        (by_site.clone(), by_site, quote!(move || #output #block))
    };

    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let __syncmap_memo = #wrapper_lookup;
            #setup
            if let ::core::option::Option::Some(__syncmap_value) = __syncmap_memo.#hit(#view) {
                return __syncmap_value;
            }
            // On a miss the owned key is built before the arguments move into the body.
            __syncmap_memo.#miss(#make_key, #compute, #keep)
        }

        #[doc = #cache_doc]
        #(#other_attrs)*
        #[allow(clippy::type_complexity, dead_code)]
        #vis fn #cache_fn #impl_generics () -> &'static ::syncmemo::Memo<#key_ty, #value_ty> #where_clause {
            #[allow(dead_code)]
            fn __syncmap_key_part_is_hash_and_eq<T: ?::core::marker::Sized + ::core::hash::Hash + ::core::cmp::Eq>() {}
            #key_asserts
            #lookup
        }

        #[doc = #uncached_doc]
        #(#other_attrs)*
        #[allow(dead_code)]
        #vis #uncached_sig #block
    })
}
