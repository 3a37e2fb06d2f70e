mkdir d && echo ctx > d/f && ln -s d dlink
