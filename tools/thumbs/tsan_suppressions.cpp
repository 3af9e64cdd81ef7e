// ThreadSanitizer suppressions built into the programs that run libvips, so
// that they hold under any TSAN_OPTIONS (tools/run-tests.sh sets its own file).
//
// libvips runs each image through threads of its own and synchronizes them
// with GLib's mutexes and conditions, which are futex calls inside GLib, not
// instrumented: TSan sees the memcpy/malloc that libvips and the codecs under
// it (zlib, libpng, libjpeg, ...) make from those threads, through its
// interceptors, but not the locks that order them, and reports races that are
// not races (and the stacks end in the uninstrumented library, so `race:`
// lines cannot name them all). `called_from_lib` has TSan ignore what these
// libraries do themselves; a race in our own code is still reported.
#if defined(__SANITIZE_THREAD__)
extern "C" const char* __tsan_default_suppressions() {
  return "called_from_lib:libvips.so\n"
         "called_from_lib:libglib-2.0.so\n"
         "called_from_lib:libgobject-2.0.so\n"
         "called_from_lib:libgio-2.0.so\n"
         "called_from_lib:libz.so\n"
         "called_from_lib:libpng16.so\n"
         "called_from_lib:libjpeg.so\n"
         "called_from_lib:libwebp.so\n"
         "called_from_lib:libwebpmux.so\n"
         "called_from_lib:libwebpdemux.so\n"
         "called_from_lib:libexif.so\n"
         "called_from_lib:liborc-0.4.so\n"
         "called_from_lib:liblcms2.so\n"
         "called_from_lib:libtiff.so\n"
         "called_from_lib:libexpat.so\n"
         "called_from_lib:libimagequant.so\n"
         "called_from_lib:libcgif.so\n"
         "race:libvips.so\n"
         "race:libglib-2.0.so\n";
}
#endif
