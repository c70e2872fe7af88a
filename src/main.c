/* main.c: the ncsn executable. */
#include "ncsn/cli.h"
#include "ncsn/ops.h"

int main(int argc, char **argv)
{
    ops_choose_blas_kernels(argv);
    return cli_main(argc, argv);
}
