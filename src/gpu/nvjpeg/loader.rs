//! nvJPEG loaded at run time: the library found under one of [`LIBRARY_NAMES`] with
//! `libloading`, every entry point the decoder calls resolved from it once ([`api`]). A machine
//! without libnvjpeg gets an [`NvjpegError`] saying what to install, never a panic. Decoding is
//! `super::decoder`'s.

use std::ffi::c_int;
use std::sync::OnceLock;

use super::{ffi, NvjpegError};

/// The library names tried, in this order: CUDA 13's, CUDA 12's, then whatever `libnvjpeg.so`
/// the loader finds (a development install).
pub const LIBRARY_NAMES: [&str; 3] = ["libnvjpeg.so.13", "libnvjpeg.so.12", "libnvjpeg.so"];

/// The resolved entry points. The library is never unloaded while these exist: it lives in
/// the same struct, and the process-wide one in a static.
pub struct Api {
    pub(super) library_name: &'static str,
    pub(super) get_property: ffi::GetPropertyFn,
    pub(super) create_ex: ffi::CreateExFn,
    pub(super) destroy: ffi::DestroyFn,
    pub(super) jpeg_state_create: ffi::JpegStateCreateFn,
    pub(super) jpeg_state_destroy: ffi::JpegStateDestroyFn,
    pub(super) get_image_info: ffi::GetImageInfoFn,
    pub(super) decode: ffi::DecodeFn,
    pub(super) decode_batched_initialize: ffi::DecodeBatchedInitializeFn,
    pub(super) decode_batched: ffi::DecodeBatchedFn,
    _library: libloading::Library,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("library", &self.library_name)
            .finish_non_exhaustive()
    }
}

impl Api {
    fn resolve(library: libloading::Library, name: &'static str) -> Result<Api, NvjpegError> {
        fn symbol<T: Copy>(
            library: &libloading::Library,
            library_name: &str,
            symbol: &'static str,
        ) -> Result<T, NvjpegError> {
            // SAFETY: each call below names T as the function-pointer type that nvjpeg.h
            // declares for `symbol` (the aliases in `ffi`); the pointer is only called while
            // the library is loaded (it is stored next to it).
            unsafe { library.get::<T>(symbol) }
                .map(|s| *s)
                .map_err(|e| NvjpegError::SymbolMissing {
                    library: library_name.to_string(),
                    symbol,
                    message: e.to_string(),
                })
        }
        Ok(Api {
            library_name: name,
            get_property: symbol(&library, name, "nvjpegGetProperty")?,
            create_ex: symbol(&library, name, "nvjpegCreateEx")?,
            destroy: symbol(&library, name, "nvjpegDestroy")?,
            jpeg_state_create: symbol(&library, name, "nvjpegJpegStateCreate")?,
            jpeg_state_destroy: symbol(&library, name, "nvjpegJpegStateDestroy")?,
            get_image_info: symbol(&library, name, "nvjpegGetImageInfo")?,
            decode: symbol(&library, name, "nvjpegDecode")?,
            decode_batched_initialize: symbol(&library, name, "nvjpegDecodeBatchedInitialize")?,
            decode_batched: symbol(&library, name, "nvjpegDecodeBatched")?,
            _library: library,
        })
    }

    /// `major.minor.patch` of the loaded library.
    pub fn version(&self) -> String {
        let part = |kind: ffi::LibraryPropertyType| {
            let mut value: c_int = -1;
            // SAFETY: nvjpegGetProperty writes one int; it needs no handle or GPU.
            let status = unsafe { (self.get_property)(kind, &mut value) };
            if status == ffi::NVJPEG_STATUS_SUCCESS {
                value.to_string()
            } else {
                "?".to_string()
            }
        };
        format!("{}.{}.{}", part(0), part(1), part(2))
    }

    /// The file name that was loaded (`libnvjpeg.so.13`, …).
    pub fn library_name(&self) -> &'static str {
        self.library_name
    }
}

/// Opens the first of `names` that loads and resolves every entry point from it.
pub fn load_from(names: &[&'static str]) -> Result<Api, NvjpegError> {
    let mut last = "no library name given".to_string();
    for &name in names {
        // SAFETY: loading a shared library runs its initialisers; nvJPEG's (and any system
        // library's) only set up their own state.
        match unsafe { libloading::Library::new(name) } {
            Ok(library) => return Api::resolve(library, name),
            Err(e) => last = e.to_string(),
        }
    }
    Err(NvjpegError::LibraryMissing {
        tried: names.join(", "),
        message: last,
    })
}

/// The process's nvJPEG, loaded and resolved on first use from [`LIBRARY_NAMES`].
pub fn api() -> Result<&'static Api, NvjpegError> {
    static API: OnceLock<Result<Api, NvjpegError>> = OnceLock::new();
    API.get_or_init(|| load_from(&LIBRARY_NAMES))
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_missing_library_is_an_error_that_says_what_to_install() {
        let e = load_from(&["libnvjpeg-missing.so.99"]).unwrap_err();
        let message = e.to_string();
        assert!(
            message.starts_with("the nvJPEG library was not found (tried libnvjpeg-missing.so.99")
                && message.contains("install nvJPEG")
                && message.contains("LD_LIBRARY_PATH"),
            "{message}"
        );
    }

    #[test]
    fn a_library_without_the_symbols_is_refused_naming_the_first_missing_one() {
        // libc is loaded in every process and has none of nvJPEG's symbols.
        let e = load_from(&["libnvjpeg-missing.so.99", "libc.so.6"]).unwrap_err();
        match &e {
            NvjpegError::SymbolMissing {
                library, symbol, ..
            } => {
                assert_eq!(
                    (library.as_str(), *symbol),
                    ("libc.so.6", "nvjpegGetProperty")
                );
            }
            other => panic!("{other}"),
        }
        assert!(
            e.to_string().contains("install nvJPEG from CUDA 12 or 13"),
            "{e}"
        );
    }
}
