//! `uniffi-bindgen`: generates the Swift, Kotlin and Python sources from the built
//! library (`generate --library`). It is a build tool, not part of the library; it
//! exists only with the `bindgen` feature.

fn main() {
    uniffi::uniffi_bindgen_main()
}
