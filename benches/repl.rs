fn main() {
    let a: Vec<String> = std::env::args().collect();
    vmemcache::internals::repl::main(&a);
}
