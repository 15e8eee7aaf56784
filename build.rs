//! Generates the gRPC code of `src/protos/*.proto` with protox (a pure-Rust protobuf compiler), so
//! a fresh machine builds without a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["src/protos/sessions_v1.proto", "src/protos/commandable.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["src/protos"])?;
    tonic_build::configure().build_server(true).build_client(true).compile_fds(descriptors)?;
    Ok(())
}
