// OpenBLAS's CBLAS interface, and the system headers the kernels need on Linux.
#include <cblas.h>
#include <malloc.h>
