//! Generates the CRI v1 client (runtime.v1 RuntimeService and ImageService), and the server side
//! for the in-memory runtime of hollow nodes (unimplemented calls answer Unimplemented).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps a fresh machine building without a system protobuf-compiler.
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    Ok(())
}
