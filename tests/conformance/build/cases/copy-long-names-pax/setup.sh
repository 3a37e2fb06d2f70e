long=$(printf 'a%.0s' $(seq 1 150))
echo long > "$long.txt"
dir1=$(printf 'b%.0s' $(seq 1 100)); dir2=$(printf 'c%.0s' $(seq 1 100)); dir3=$(printf 'x%.0s' $(seq 1 80))
mkdir -p "$dir1/$dir2/$dir3"
echo deeper > "$dir1/$dir2/$dir3/$(printf 'y%.0s' $(seq 1 99)).dat"
ln -s "$dir1/$dir2/$dir3/$(printf 'y%.0s' $(seq 1 99)).dat" long-link
ln "$long.txt" "$dir1/$(printf 'z%.0s' $(seq 1 120))"
exact=$(printf 'q%.0s' $(seq 1 100)); echo exactly-100 > "$exact"
