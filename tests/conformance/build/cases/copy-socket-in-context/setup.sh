perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => "socket.sock", Listen => 1) or die "socket: $!"'
perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => "sub/inner.sock", Listen => 1) or die "socket: $!"'
chmod 0755 socket.sock sub/inner.sock
test -S socket.sock
