//! Generates the gRPC code of `src/protos/*.proto` with protox (a pure-Rust protobuf compiler), so
//! a fresh machine builds without a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["src/protos/sessions_v1.proto", "src/protos/commandable.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["src/protos"])?;
    // Both halves are generated; the server half compiles only with the `server` feature, so the
    // client build needs no tonic server (`router`, `server`).
    let server_only = r#"#[cfg(feature = "server")]"#;
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .server_mod_attribute("sessions_v1", server_only)
        .server_mod_attribute("commandable", server_only)
        .compile_fds(descriptors)?;
    Ok(())
}
