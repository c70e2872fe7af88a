/* test_order.c (2 ranks): over an epoch, with the trainer's slicing and data
 * order, every image is used exactly once across ranks; for several global
 * batch sizes, including ones the rank count does not divide. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/data.h"

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size, failed = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const long N = 997; /* prime: batches straddle epoch boundaries */
    const long batches[] = {7, 10, 64};
    for (int bi = 0; bi < 3; bi++) {
        long B = batches[bi];
        for (long epoch = 0; epoch < 2; epoch++) {
            int *count = calloc((size_t)N, sizeof(int));
            DataOrder order;
            data_order_init(&order, N, 1234);
            long lo, hi;
            data_slice(B, rank, size, &lo, &hi);
            /* every step whose samples overlap this epoch */
            for (long step = epoch * N / B; step * B < (epoch + 1) * N; step++)
                for (long k = lo; k < hi; k++) {
                    long p = step * B + k;
                    if (p / N == epoch) count[data_order_image(&order, p)]++;
                }
            MPI_Allreduce(MPI_IN_PLACE, count, (int)N, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
            long wrong = 0;
            for (long i = 0; i < N; i++) wrong += count[i] != 1;
            if (rank == 0)
                printf("B=%ld epoch %ld ranks %d: %ld images not used exactly once %s\n", B, epoch, size,
                       wrong, wrong ? "FAIL" : "ok");
            failed |= wrong != 0;
            data_order_free(&order);
            free(count);
        }
    }
    if (size < 2 && rank == 0) {
        printf("needs 2 ranks\n");
        failed = 1;
    }
    MPI_Finalize();
    return failed;
}
