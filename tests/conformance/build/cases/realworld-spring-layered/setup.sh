# The jar `mvn package` leaves in target/ (a tar standing for the zip): the application's
# classes, two dependency jars, the loader and layers.idx, with no SNAPSHOT dependency.
# Built here with fixed owners, modes and times, so the tar is the same on every run.
set -e
j=$(mktemp -d)
mkdir -p "$j/BOOT-INF/classes/com/example/demo" "$j/BOOT-INF/lib" "$j/META-INF" \
  "$j/org/springframework/boot/loader/launch"
cp target/classes/com/example/demo/DemoApplication.class "$j/BOOT-INF/classes/com/example/demo/"
echo 'server.port=8080' > "$j/BOOT-INF/classes/application.properties"
echo 'jar spring-web' > "$j/BOOT-INF/lib/spring-web-6.1.6.jar"
echo 'jar jackson' > "$j/BOOT-INF/lib/jackson-core-2.15.4.jar"
echo 'class JarLauncher' > "$j/org/springframework/boot/loader/launch/JarLauncher.class"
printf 'Manifest-Version: 1.0\nMain-Class: org.springframework.boot.loader.launch.JarLauncher\nStart-Class: com.example.demo.DemoApplication\n' > "$j/META-INF/MANIFEST.MF"
cat > "$j/BOOT-INF/layers.idx" <<'IDX'
- "dependencies":
  - "BOOT-INF/lib/jackson-core-2.15.4.jar"
  - "BOOT-INF/lib/spring-web-6.1.6.jar"
- "spring-boot-loader":
  - "org/"
- "snapshot-dependencies":
- "application":
  - "BOOT-INF/classes/"
  - "BOOT-INF/layers.idx"
  - "META-INF/"
IDX
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --mode=u=rwX,go=rX \
  -C "$j" -cf target/demo-0.0.1-SNAPSHOT.jar BOOT-INF META-INF org
rm -rf "$j"
