fn main() {
    println!("{} listening on 0.0.0.0:8000", core::greeting());
}
