echo same > a && ln a b
mkdir d1 d2 && echo cross > d1/in-d1 && ln d1/in-d1 d2/in-d2 && ln a d2/also-a
