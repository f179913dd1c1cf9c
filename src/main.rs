fn main() {
    print!("{}", herald::api::crd::crds_yaml());
}
