//! Starts the test Synapse for scripts (the browser test): prints `url=`, `admin_user=` and
//! `admin_password=` lines once it is ready, then keeps it running until this process is
//! killed; the harness's watcher then stops Synapse.

fn main() {
    let Some(synapse) = imgate_e2e::synapse::synapse() else {
        eprintln!("imgate-test-synapse: the Matrix variant is skipped on this machine");
        std::process::exit(2);
    };
    println!("url={}", synapse.url);
    println!("admin_user={}", synapse.admin_user);
    println!("admin_password={}", synapse.admin_password);
    loop {
        std::thread::park();
    }
}
